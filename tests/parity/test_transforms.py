"""segfpn's train transforms against mmseg 1.2.2's ADE20K pipeline, bit for bit with forced random draws.

mmseg draws from ``numpy.random`` (recorded by :class:`Tape`); segfpn from each transform's ``py_random``,
which the tests replace by :class:`Replay`, answering with the same recorded values. The images are the
three real ADE20K samples (mmseg's side gets them in BGR, as its cv2 loader gives them)."""

from __future__ import annotations

import random

import albumentations as A
import numpy as np
import pytest
import torch

from segfpn.datasets import ADE20KDataset, train_transform, val_transform
from segfpn.datasets.transforms import CatMaxRatioCrop, PhotoMetricDistortion, RandomRescale, fit_size
from tests.parity.conftest import Tape, build_mmseg_transform, import_reference, mmseg_config

pytestmark = pytest.mark.parity


class Replay(random.Random):
    """A ``py_random`` answering segfpn's draws with values recorded from mmseg's, checking that both
    sample the same range."""

    def __init__(self, events: list[tuple[str, tuple, object]]) -> None:
        super().__init__(0)
        self.events = list(events)

    def _next(self, name: str) -> tuple[tuple, object]:
        assert self.events, f"segfpn draws more than mmseg (next: {name})"
        got, args, value = self.events.pop(0)
        assert got == name, f"segfpn draws {name} where mmseg drew {got}"
        return args, value

    def random(self) -> float:  # mmcv's RandomResize ratio (uniform = a + (b - a) * random(), as mmcv)
        return self._next("random_sample")[1]

    def randint(self, a: int, b: int) -> int:  # inclusive bounds; numpy's high is exclusive
        (low, high), value = self._next("randint")
        assert (a, b) == (low, high - 1), f"segfpn draws randint[{a}, {b}], mmseg randint[{low}, {high})"
        return value


def _pipeline_cfg(name: str) -> dict:
    return next(dict(t) for t in mmseg_config().train_pipeline if t["type"] == name)


def _results(image: np.ndarray, mask: np.ndarray) -> dict:
    return {"img": image[..., ::-1].copy(), "gt_seg_map": mask.copy(), "seg_fields": ["gt_seg_map"]}


def test_train_pipeline_order_and_parameters_are_mmsegs() -> None:
    steps = [t["type"] for t in mmseg_config().train_pipeline]
    assert steps == [
        "LoadImageFromFile",
        "LoadAnnotations",
        "RandomResize",
        "RandomCrop",
        "RandomFlip",
        "PhotoMetricDistortion",
        "PackSegInputs",
    ]
    ours = [type(t).__name__ for t in train_transform(512).transforms]
    assert ours[:4] == ["RandomRescale", "CatMaxRatioCrop", "HorizontalFlip", "PhotoMetricDistortion"]
    resize, crop = _pipeline_cfg("RandomResize"), _pipeline_cfg("RandomCrop")
    ours_resize, ours_crop = train_transform(512).transforms[:2]
    assert ours_resize.scale == tuple(resize["scale"]) and ours_resize.ratio_range == tuple(resize["ratio_range"])
    assert (ours_crop.height, ours_crop.width) == tuple(crop["crop_size"])
    assert ours_crop.cat_max_ratio == crop["cat_max_ratio"]


def test_random_resize_bit_exact(real_pairs, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = build_mmseg_transform(_pipeline_cfg("RandomResize"))
    ours = RandomRescale()
    for k, (image, mask) in enumerate(real_pairs):
        for i in range(25):
            tape = Tape(100 * k + i).patch(monkeypatch)
            out = reference(_results(image, mask))
            ours.py_random = Replay(tape.events)
            got = ours(image=image, mask=mask)
            assert got["image"].shape == out["img"].shape, (k, i, tape.events)
            np.testing.assert_array_equal(got["image"], out["img"][..., ::-1])
            np.testing.assert_array_equal(got["mask"], out["gt_seg_map"])


def test_random_resize_scale_truncation_on_201_ratios() -> None:
    """The target scale is truncated to integers before the keep-ratio rescale, as mmcv's
    ``_random_sample_ratio`` + ``rescale_size`` (sizes compared over a grid of ratios, no image needed)."""
    processing = import_reference("mmcv.transforms.processing")
    geometric = import_reference("mmcv.image.geometric")
    ours = RandomRescale()
    for h, w in [(512, 683), (375, 500), (512, 512), (1536, 2048)]:
        for u in np.linspace(0.0, 1.0, 201):
            ours.py_random = Replay([("random_sample", (), float(u))])
            size = ours.get_params_dependent_on_data({"shape": (h, w)}, {})["size"]
            np_random_sample = np.random.random_sample
            np.random.random_sample = lambda u=u: float(u)
            try:
                scale = processing.RandomResize._random_sample_ratio((2048, 512), (0.5, 2.0))
            finally:
                np.random.random_sample = np_random_sample
            new_w, new_h = geometric.rescale_size((w, h), scale)
            assert size == (new_h, new_w), (h, w, u)


def test_random_crop_cat_max_ratio_bit_exact(real_pairs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crop boxes with retries: small crops make single-class crops (hence the 10 tries) common."""
    for crop_size in [(512, 512), (96, 128), (700, 700)]:
        reference = build_mmseg_transform({**_pipeline_cfg("RandomCrop"), "crop_size": crop_size})
        ours = CatMaxRatioCrop(*crop_size, cat_max_ratio=_pipeline_cfg("RandomCrop")["cat_max_ratio"])
        for k, (image, mask) in enumerate(real_pairs):
            for i in range(10):
                tape = Tape(1000 * k + i).patch(monkeypatch)
                out = reference(_results(image, mask))
                replay = Replay(tape.events)
                ours.py_random = replay
                got = ours(image=image, mask=mask)
                assert not replay.events, "mmseg drew more crop boxes than segfpn"
                np.testing.assert_array_equal(got["image"], out["img"][..., ::-1])
                np.testing.assert_array_equal(got["mask"], out["gt_seg_map"])


def test_random_flip_bit_exact(real_pairs) -> None:
    reference = build_mmseg_transform({**_pipeline_cfg("RandomFlip"), "prob": 1.0})
    for image, mask in real_pairs:
        out = reference(_results(image, mask))
        got = A.HorizontalFlip(p=1.0)(image=image, mask=mask)
        np.testing.assert_array_equal(got["image"], out["img"][..., ::-1])
        np.testing.assert_array_equal(got["mask"], out["gt_seg_map"])


def photometric_params(events: list[tuple[str, tuple, object]]) -> dict:
    """segfpn's PhotoMetricDistortion parameters from the draws of mmseg's, in mmseg's order: brightness,
    mode, [contrast if mode 1], saturation, hue, [contrast if mode 0]."""
    events = list(events)

    def optional(kind: str):
        name, _, on = events.pop(0)
        assert (name, kind) == ("randint", kind) or name == "randint"
        if not on:
            return None
        name, args, value = events.pop(0)
        return value, args

    params: dict = {}
    brightness = optional("brightness")
    params["brightness"] = None if brightness is None else brightness[0]
    params["contrast_first"] = bool(events.pop(0)[2])
    if params["contrast_first"]:
        contrast = optional("contrast")
    saturation, hue = optional("saturation"), optional("hue")
    if not params["contrast_first"]:
        contrast = optional("contrast")
    params["contrast"] = None if contrast is None else contrast[0]
    params["saturation"] = None if saturation is None else saturation[0]
    params["hue"] = None if hue is None else hue[0]
    if hue is not None:
        assert hue[1] == (-18, 18), hue  # numpy randint(-18, 18): -18..17
    assert not events
    return params


def test_photometric_distortion_bit_exact(real_pairs, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = build_mmseg_transform(_pipeline_cfg("PhotoMetricDistortion"))
    ours = PhotoMetricDistortion()
    both_hsv = 0
    for k, (image, mask) in enumerate(real_pairs):
        for i in range(40):
            tape = Tape(10_000 * k + i).patch(monkeypatch)
            out = reference(_results(image, mask))
            params = photometric_params(tape.events)
            both_hsv += params["saturation"] is not None and params["hue"] is not None
            np.testing.assert_array_equal(ours.apply(image, **params), out["img"][..., ::-1], err_msg=str(params))
    assert both_hsv >= 10  # the case where one shared HSV round trip used to differ


def test_photometric_draws_cover_mmsegs_ranges() -> None:
    ours = PhotoMetricDistortion()
    ours.set_random_seed(0)
    draws = [ours.get_params() for _ in range(4000)]
    hues = {d["hue"] for d in draws if d["hue"] is not None}
    assert hues == set(range(-18, 18))
    for key, (low, high) in {"brightness": (-32, 32), "contrast": (0.5, 1.5), "saturation": (0.5, 1.5)}.items():
        values = [d[key] for d in draws if d[key] is not None]
        assert 0.45 < len(values) / len(draws) < 0.55
        assert low <= min(values) < low + 0.05 * (high - low) and high - 0.05 * (high - low) < max(values) <= high
    assert 0.45 < np.mean([d["contrast_first"] for d in draws]) < 0.55


def test_whole_train_pipeline_with_preprocessor(real_pairs, monkeypatch: pytest.MonkeyPatch) -> None:
    """RandomResize -> RandomCrop -> RandomFlip -> PhotoMetricDistortion -> PackSegInputs ->
    SegDataPreProcessor (BGR->RGB, normalise, pad bottom/right to 512 with 0 / 255), against segfpn's
    train_transform with the same draws: masks equal, images to float32 rounding."""
    import_reference("mmseg.models")
    from mmseg.models.data_preprocessor import SegDataPreProcessor

    cfg = mmseg_config()
    steps = [build_mmseg_transform(t) for t in cfg.train_pipeline[2:]]
    preprocessor_cfg = dict(mmseg_config("_base_/models/fpn_r50.py").data_preprocessor)
    preprocessor_cfg.pop("type")
    preprocessor = SegDataPreProcessor(**preprocessor_cfg, size=tuple(cfg.crop_size))
    ours = train_transform(512)
    for k, (image, mask) in enumerate(real_pairs):
        for i in range(4):
            tape = Tape(7 * k + i).patch(monkeypatch)
            results = _results(image, mask)
            results["img_path"], results["seg_map_path"], results["img_shape"] = "x", "x", image.shape[:2]
            results["ori_shape"], results["reduce_zero_label"] = image.shape[:2], True
            for step in steps:
                results = step(results)
            batch = preprocessor({"inputs": [results["inputs"]], "data_samples": [results["data_samples"]]}, True)
            events = list(tape.events)
            photometric = [e for e in events if e[0] in ("randint", "uniform") and not _is_crop(e)]
            flip = [e for e in events if e[0] == "choice"]
            geometric = [e for e in events if e not in photometric and e not in flip]
            rescale, crop, hflip, distort = ours.transforms[:4]
            rescale.py_random = crop.py_random = Replay(geometric)
            hflip.py_random = _FlipReplay(flip[0][2] == "horizontal")
            distort.get_params = lambda p=photometric_params(photometric): p
            got = ours(image=image, mask=mask)
            np.testing.assert_array_equal(got["mask"].numpy(), batch["data_samples"][0].gt_sem_seg.data[0].numpy())
            torch.testing.assert_close(got["image"], batch["inputs"][0], rtol=0, atol=2e-5)


def _is_crop(event: tuple[str, tuple, object]) -> bool:
    """Crop offsets are numpy randint(0, margin + 1); the distortion's are randint(2) and randint(-18, 18)."""
    return event[0] == "randint" and event[1][1] is not None and event[1][0] == 0


class _FlipReplay(random.Random):
    def __init__(self, flip: bool) -> None:
        super().__init__(0)
        self.flip = flip

    def random(self) -> float:
        return 0.0 if self.flip else 0.99


def test_test_pipeline_sizes_and_label_maps(samples_root) -> None:
    """mmseg's ADE20K test pipeline (Resize (2048, 512) keep_ratio, LoadAnnotations reduce_zero_label) on
    the real files: segfpn's resize size (fit_size) and its dataset's label maps are the same; segfpn's
    val_transform leaves the annotation at its own resolution, as mmseg's evaluation does."""
    steps = [build_mmseg_transform(t) for t in mmseg_config().test_pipeline[:-1]]
    dataset = ADE20KDataset(samples_root, "validation", transform=val_transform())
    assert len(dataset) == 3
    for (image_path, ann_path), (image, mask) in zip(dataset.pairs, dataset):
        results = {"img_path": str(image_path), "seg_map_path": str(ann_path), "reduce_zero_label": True}
        results["seg_fields"] = []
        for step in steps:
            results = step(results)
        h, w = results["ori_shape"]
        assert fit_size(h, w, (2048, 512)) == results["img"].shape[:2]
        np.testing.assert_array_equal(mask.numpy(), results["gt_seg_map"])
        assert tuple(image.shape[-2:]) == (h, w)
