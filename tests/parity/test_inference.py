"""Evaluation protocols against mmsegmentation 1.2.2's own test pipeline and ``EncoderDecoder`` logic.

The mmseg side runs mmseg's code end to end: ``LoadImageFromFile`` -> ``Resize(scale=(2048, 512), keep_ratio=True)``
-> ``LoadAnnotations(reduce_zero_label=True)`` -> ``PackSegInputs`` (or its ``TestTimeAug`` pipeline), then
``SegDataPreProcessor``, ``EncoderDecoder.predict`` (whole or slide inference, ``postprocess_result``) and
``SegTTAModel``. Its backbone and decode head are thin mmseg-registered wrappers around the SAME segfpn modules
(backbone + FPN, Semantic FPN head), so what is compared is how an image reaches the model and how the logits come
back, not the decoder (compared elsewhere with copied weights).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segfpn.datasets import ADE20KDataset
from segfpn.datasets.transforms import eval_size
from segfpn.inference.protocols import InferenceConfig, eval_input, predict_logits, to_pixels
from segfpn.models import SegmentationModel
from tests.parity.conftest import import_reference

pytestmark = pytest.mark.parity

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def _register_wrappers() -> None:
    """mmseg registry entries that run segfpn's own backbone + FPN and head inside mmseg's ``EncoderDecoder``."""
    registry = import_reference("mmseg.registry").MODELS
    if "SegfpnPyramid" in registry.module_dict:
        return
    base_head = import_reference("mmseg.models.decode_heads.decode_head").BaseDecodeHead
    base_module = import_reference("mmengine.model").BaseModule

    @registry.register_module(force=True)
    class SegfpnPyramid(base_module):
        def __init__(self, net: SegmentationModel) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return self.net.neck(self.net.backbone(x))  # the image as mmseg hands it over: no padding here

    @registry.register_module(force=True)
    class SegfpnHead(base_head):
        def __init__(self, net: SegmentationModel, **kwargs) -> None:
            super().__init__(in_channels=1, channels=1, num_classes=net.num_classes, **kwargs)
            self.net = net

        def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
            return self.net.head(list(inputs))


@pytest.fixture(scope="module")
def net() -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel(150, "pvt_v2_b0", fpn_channels=64, head_channels=32).eval()


def _segmentor(net: SegmentationModel, test_cfg: dict):
    _register_wrappers()
    models = import_reference("mmseg.models")
    encoder_decoder = models.segmentors.EncoderDecoder
    # the ADE20K configs' preprocessor: size=crop_size pads training batches only (no test_cfg: no test padding)
    preprocessor = models.SegDataPreProcessor(
        mean=MEAN, std=STD, bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(512, 512)
    )
    model = encoder_decoder(
        backbone=dict(type="SegfpnPyramid", net=net),
        decode_head=dict(type="SegfpnHead", net=net, align_corners=False),
        data_preprocessor=preprocessor,
        test_cfg=import_reference("mmengine.config").ConfigDict(test_cfg),  # as a config file gives it
    )
    return model.eval()


def _test_pipeline(scale: tuple[int, int]):
    mmcv_transforms = import_reference("mmcv.transforms")
    mmseg_transforms = import_reference("mmseg.datasets.transforms")
    return mmcv_transforms.Compose(
        [
            mmcv_transforms.LoadImageFromFile(),
            mmcv_transforms.Resize(scale=scale, keep_ratio=True),
            mmseg_transforms.LoadAnnotations(reduce_zero_label=True),
            mmseg_transforms.PackSegInputs(),
        ]
    )


@pytest.fixture(scope="module")
def images(samples_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ADE20K layout with the three real samples plus two crops of the 512x683 one (512x512, 375x500), as PNG so
    both sides decode the same pixels."""
    root = tmp_path_factory.mktemp("ade") / "ADEChallengeData2016"
    for sub in ("images", "annotations"):
        (root / sub / "validation").mkdir(parents=True)
    for path in sorted((samples_root / "images" / "validation").glob("*.jpg")):
        (root / "images" / "validation" / path.name).symlink_to(path)
        ann = samples_root / "annotations" / "validation" / f"{path.stem}.png"
        (root / "annotations" / "validation" / ann.name).symlink_to(ann)
    first = samples_root / "images" / "validation" / "ADE_val_00000001.jpg"
    image = np.asarray(Image.open(first))
    ann = np.asarray(Image.open(samples_root / "annotations" / "validation" / "ADE_val_00000001.png"))
    for name, (h, w) in {"crop_512x512": (512, 512), "crop_375x500": (375, 500)}.items():
        Image.fromarray(image[:h, 100 : 100 + w]).save(root / "images" / "validation" / f"{name}.png")
        Image.fromarray(ann[:h, 100 : 100 + w]).save(root / "annotations" / "validation" / f"{name}.png")
    return {"root": root}


def _mmseg_sample(root: Path, stem: str, pipeline) -> dict:
    image = next((root / "images" / "validation").glob(f"{stem}.*"))
    results = dict(
        img_path=str(image),
        seg_map_path=str(root / "annotations" / "validation" / f"{stem}.png"),
        reduce_zero_label=True,
        seg_fields=[],
    )
    return pipeline(results)


def _segfpn_sample(root: Path, stem: str) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = ADE20KDataset(root, "validation")
    index = next(i for i, (img, _) in enumerate(dataset.pairs) if img.stem == stem)
    image, mask = dataset[index]
    return image[None], mask


STEMS = ["ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003", "crop_512x512", "crop_375x500"]


@pytest.mark.parametrize("stem", STEMS)
def test_test_pipeline_pixels_and_labels_equal_mmsegs(images: dict, stem: str) -> None:
    """Resized pixels identical to mmcv's (cv2 on uint8), annotation untouched and reduced as mmseg's."""
    root = images["root"]
    packed = _mmseg_sample(root, stem, _test_pipeline((2048, 512)))
    image, mask = _segfpn_sample(root, stem)
    resized = to_pixels(eval_input(image, InferenceConfig()))[0]
    reference = packed["inputs"].permute(1, 2, 0).numpy()[..., ::-1]  # CHW BGR -> HWC RGB
    assert resized.shape == reference.shape
    np.testing.assert_array_equal(resized, reference)
    np.testing.assert_array_equal(mask.numpy(), packed["data_samples"].gt_sem_seg.data[0].numpy())
    assert tuple(packed["data_samples"].ori_shape) == tuple(mask.shape)


@pytest.mark.parametrize("ratio", [0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
def test_multiscale_sizes_equal_mmcvs(ratio: float) -> None:
    """Per-scale sizes: with ``test_scale``, mmseg 0.x ``MultiScaleFlipAug(img_scale=(2048, 512), img_ratios)`` hands
    ``(int(2048 * r), int(512 * r))`` to a keep-ratio resize (mmcv's ``rescale_size``); without, mmseg 1.x TTA's
    ``Resize(scale_factor=r, keep_ratio=True)`` (run here on a blank image of each size)."""
    mmcv = import_reference("mmcv")
    resize = import_reference("mmcv.transforms").Resize(scale_factor=ratio, keep_ratio=True)
    for h, w in [(512, 683), (364, 500), (300, 400), (375, 500), (512, 512), (1536, 2048), (97, 131)]:
        scale = (int(2048 * ratio), int(512 * ratio))
        assert eval_size(h, w, (2048, 512), ratio) == mmcv.rescale_size((w, h), scale)[::-1]
        assert eval_size(h, w, None, ratio) == resize(dict(img=np.zeros((h, w, 3), np.uint8)))["img"].shape[:2]


def _compare(ours: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    diff = (ours - reference).abs().max().item()
    agreement = (ours.argmax(1) == reference.argmax(1)).float().mean().item()
    return diff, agreement


def _mmseg_logits(segmentor, packed: dict) -> torch.Tensor:
    data = segmentor.data_preprocessor(import_reference("mmengine.dataset").pseudo_collate([packed]), False)
    with torch.no_grad():
        samples = segmentor.predict(data["inputs"], data["data_samples"])
    return samples[0].seg_logits.data[None]


CASES = {
    "512x683": ("ADE_val_00000001", (2048, 512)),
    "512x512": ("crop_512x512", (2048, 512)),
    "375x500->512x683": ("crop_375x500", (2048, 512)),
    "375x500 unresized": ("crop_375x500", (500, 375)),
}


# slide: not 375x500->512x683, whose model input is a 512x683 image like the 512x683 case's
RUNS = [(case, "whole") for case in CASES] + [(case, "slide") for case in CASES if case != "375x500->512x683"]


@pytest.mark.parametrize(("case", "mode"), RUNS)
def test_whole_and_slide_equal_mmseg_encoder_decoder(images: dict, net: SegmentationModel, case: str, mode: str):
    """``protocol="mmseg"``: same logits (at the annotation size) and argmax as mmseg's ``EncoderDecoder.predict``
    (``whole_inference``/``slide_inference`` with crop 384 stride 256, then ``postprocess_result``)."""
    stem, scale = CASES[case]
    cfg = dict(mode="whole") if mode == "whole" else dict(mode="slide", crop_size=(384, 384), stride=(256, 256))
    reference = _mmseg_logits(_segmentor(net, cfg), _mmseg_sample(images["root"], stem, _test_pipeline(scale)))
    image, _ = _segfpn_sample(images["root"], stem)
    extra = {} if mode == "whole" else {"crop_size": (384, 384), "stride": (256, 256)}
    ours = predict_logits(net, image, InferenceConfig(protocol="mmseg", mode=mode, test_scale=scale, **extra))
    diff, agreement = _compare(ours, reference)
    print(f"mmseg protocol {mode} {case}: max abs logit diff {diff:.2e}, argmax agreement {agreement:.6f}")
    assert ours.shape == reference.shape
    assert diff < 1e-5
    assert agreement == 1.0


@pytest.mark.parametrize("stem", ["ADE_val_00000001", "crop_512x512", "crop_375x500"])
def test_multiscale_flip_equals_mmseg_tta(images: dict, net: SegmentationModel, stem: str) -> None:
    """mmseg 1.x TTA (``TestTimeAug`` of ``Resize(scale_factor=r, keep_ratio=True)`` x ``RandomFlip(prob=0/1)`` on the
    original image, ``SegTTAModel`` averaging the softmax of each prediction at the original size) = segfpn's
    ``test_scale=None, scales=[...], flip=True``: same argmax as ``SegTTAModel.test_step``, same mean probability as
    mmseg's per-augmentation ``seg_logits``."""
    mmcv_transforms = import_reference("mmcv.transforms")
    mmseg_transforms = import_reference("mmseg.datasets.transforms")
    tta_model = import_reference("mmseg.models.segmentors").SegTTAModel
    pseudo_collate = import_reference("mmengine.dataset").pseudo_collate
    ratios = [0.5, 0.75]
    tta = mmcv_transforms.Compose(
        [
            mmcv_transforms.LoadImageFromFile(),
            mmcv_transforms.TestTimeAug(
                transforms=[
                    [mmcv_transforms.Resize(scale_factor=r, keep_ratio=True) for r in ratios],
                    [
                        mmcv_transforms.RandomFlip(prob=0.0, direction="horizontal"),
                        mmcv_transforms.RandomFlip(prob=1.0, direction="horizontal"),
                    ],
                    [mmseg_transforms.LoadAnnotations(reduce_zero_label=True)],
                    [mmseg_transforms.PackSegInputs()],
                ]
            ),
        ]
    )
    segmentor = _segmentor(net, dict(mode="whole"))
    data = pseudo_collate([_mmseg_sample(images["root"], stem, tta)])
    with torch.no_grad():
        merged = tta_model(module=segmentor).test_step(data)[0].pred_sem_seg.data
        per_aug = [segmentor.test_step({k: v[i] for k, v in data.items()})[0] for i in range(len(data["inputs"]))]
    reference_probs = torch.stack([s.seg_logits.data.softmax(0) for s in per_aug]).mean(0)[None]
    image, _ = _segfpn_sample(images["root"], stem)
    ours = predict_logits(net, image, InferenceConfig(protocol="mmseg", test_scale=None, scales=ratios, flip=True))
    diff = (ours.exp() - reference_probs).abs().max().item()
    agreement = (ours.argmax(1) == merged).float().mean().item()
    print(f"mmseg TTA {ratios} + flip {stem}: max abs probability diff {diff:.2e}, argmax agreement {agreement:.6f}")
    assert diff < 1e-5
    assert agreement == 1.0


def _align_resize_reference(path: Path, scale: tuple[int, int], divisor: int) -> np.ndarray:
    """Our reading of whai362/PVT ``segmentation/align_resize.py`` (mmseg 0.x, does not install), with mmcv's own
    functions: ``mmcv.imrescale(img, scale)`` (keep ratio, bilinear), then ``_align``: ``mmcv.imresize`` to
    ``int(np.ceil(h / divisor)) * divisor`` x ``int(np.ceil(w / divisor)) * divisor`` (bilinear): a stretch, no
    padding. The logits then come back to ``ori_shape`` in ``EncoderDecoder`` (0.x ``whole_inference`` with
    ``rescale=True``, the same resize as 1.x ``postprocess_result``)."""
    mmcv = import_reference("mmcv")
    img = mmcv.imrescale(mmcv.imread(str(path)), scale)
    h, w = img.shape[:2]
    return mmcv.imresize(img, (int(np.ceil(w / divisor)) * divisor, int(np.ceil(h / divisor)) * divisor))


@pytest.mark.parametrize("case", ["512x683", "512x512", "375x500->512x683"])
def test_align_resize_equals_the_pvt_code(images: dict, net: SegmentationModel, case: str) -> None:
    stem, scale = CASES[case]
    root = images["root"]
    path = next((root / "images" / "validation").glob(f"{stem}.*"))
    stretched = _align_resize_reference(path, scale, 32)
    image, mask = _segfpn_sample(root, stem)
    config = InferenceConfig(protocol="align_resize", test_scale=scale)
    np.testing.assert_array_equal(to_pixels(eval_input(image, config))[0], stretched[..., ::-1])
    sample_cls = import_reference("mmseg.structures").SegDataSample
    sample = sample_cls(metainfo=dict(ori_shape=tuple(mask.shape), img_shape=stretched.shape[:2]))
    packed = {"inputs": torch.from_numpy(np.ascontiguousarray(stretched.transpose(2, 0, 1))), "data_samples": sample}
    reference = _mmseg_logits(_segmentor(net, dict(mode="whole")), packed)
    ours = predict_logits(net, image, config)
    diff, agreement = _compare(ours, reference)
    print(f"align_resize {case} (input {stretched.shape[:2]}): max abs logit diff {diff:.2e}, agreement {agreement}")
    assert diff < 1e-5
    assert agreement == 1.0


def test_what_the_old_protocol_changed(images: dict) -> None:
    """Before/after figures on the real samples. Pixels: interpolating the normalised float image (segfpn before)
    is not mmcv's uint8 cv2 resize. Prediction: pad-and-crop (segfpn before) vs mmseg's unpadded whole inference on
    the real 512x683 sample (pvt_v2_b0 with random weights, seed 0, full-size decoder)."""
    root = images["root"]
    worst = 0.0
    for stem in ("ADE_val_00000002", "ADE_val_00000003"):  # the two samples the (2048, 512) resize changes
        packed = _mmseg_sample(root, stem, _test_pipeline((2048, 512)))
        reference = torch.from_numpy(packed["inputs"].numpy()[::-1].copy()).float()  # BGR -> RGB, 0..255
        image, _ = _segfpn_sample(root, stem)
        size = tuple(reference.shape[-2:])
        floats = torch.nn.functional.interpolate(image, size=size, mode="bilinear", align_corners=False)[0]
        grey = floats * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
        worst = max(worst, (grey - reference).abs().max().item())
    print(f"float-tensor resize vs mmcv's uint8 resize: up to {worst:.2f} grey levels (now: identical)")
    assert worst > 0.1
    torch.manual_seed(0)
    full = SegmentationModel(150, "pvt_v2_b0").eval()
    image, _ = _segfpn_sample(root, "ADE_val_00000001")
    padded = predict_logits(full, image, InferenceConfig(protocol="pad"))
    unpadded = predict_logits(full, image, InferenceConfig(protocol="mmseg"))
    agreement = (padded.argmax(1) == unpadded.argmax(1)).float().mean().item()
    print(f"512x683 sample: pad-and-crop agrees with mmseg's unpadded prediction on {agreement:.4f} of the pixels")
    assert agreement < 1.0


def _timm_swin_to_mmseg(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm Swin keys to mmseg's ``SwinTransformer`` (patch merging moves to the end of the previous stage and its
    4C inputs go from the concatenation order (x0, x1, x2, x3) to ``nn.Unfold``'s)."""
    renames = [
        ("patch_embed.proj", "patch_embed.projection"),
        ("layers.", "stages."),
        ("attn.relative_position_bias_table", "attn.w_msa.relative_position_bias_table"),
        ("attn.qkv", "attn.w_msa.qkv"),
        ("attn.proj", "attn.w_msa.proj"),
        ("mlp.fc1", "ffn.layers.0.0"),
        ("mlp.fc2", "ffn.layers.1"),
    ]
    out = {}
    for key, value in state.items():
        if "relative_position_index" in key or key.startswith(("head", "norm.")):
            continue
        for old, new in renames:
            key = key.replace(old, new)
        if ".downsample." in key:
            stage = int(key.split(".")[1])
            key = key.replace(f"stages.{stage}.", f"stages.{stage - 1}.")
            grouped = value.reshape(*value.shape[:-1], 4, value.shape[-1] // 4)[..., [0, 2, 1, 3], :]
            value = grouped.transpose(-1, -2).reshape(value.shape)
        out[key] = value
    return out


def test_timm_swin_is_mmsegs_only_at_window_multiples() -> None:
    """With ``pad=False`` segfpn pads a Swin input to the patch size 4, as mmseg's ``PatchEmbed(padding="corner")``
    does, so the stage shapes are mmseg's at any size. The rest is timm's block: it rolls the map for the shifted
    windows BEFORE padding it to multiples of the window (mmseg pads, then rolls), so the features equal mmseg's
    ``SwinTransformer`` (same weights) only where every stage is a multiple of the window 7 (224x224, 448x672), and
    differ at 512x512 and 512x683: a backbone difference no input padding removes (see the Swin config)."""
    swin = import_reference("mmseg.models.backbones").SwinTransformer
    torch.manual_seed(0)
    net = SegmentationModel(5, "swin_tiny_patch4_window7_224", img_size=512).eval()
    reference = swin(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)
    weights = _timm_swin_to_mmseg({k.removeprefix("model."): v for k, v in net.backbone.body.state_dict().items()})
    result = reference.load_state_dict(weights, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith("norm") or "relative_position_index" in k for k in result.missing_keys)
    reference.eval()
    for (h, w), equal in {(224, 224): True, (448, 672): True, (512, 512): False, (513, 683): False}.items():
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            ours, theirs = net.extract_backbone_features(x, pad=False), reference(x)
        assert [t.shape for t in ours] == [t.shape for t in theirs]
        # mmseg normalises each output (norm0..3, left at their init: weight 1, bias 0)
        ours = [F.layer_norm(t.permute(0, 2, 3, 1), t.shape[1:2]).permute(0, 3, 1, 2) for t in ours]
        diff = max((a - b).abs().max().item() for a, b in zip(ours, theirs))
        print(f"timm Swin vs mmseg Swin at {h}x{w}: max abs feature diff {diff:.1e}")
        assert (diff < 1e-4) == equal
