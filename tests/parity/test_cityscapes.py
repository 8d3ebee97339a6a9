"""Cityscapes against mmseg 1.2.2: class names and colours, the published recipe of configs/fpn_r*_cityscapes.yaml
read from mmseg's own sem_fpn configs, and a converted mmseg Cityscapes Semantic FPN (19 classes, random weights)
whose logits under that config's evaluation settings equal mmseg's end to end (its test pipeline and predict)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from segfpn.datasets.cityscapes import CITYSCAPES_INFO, CityscapesDataset
from segfpn.datasets.synthetic_layouts import generate_cityscapes
from segfpn.inference.predictor import Segmenter
from segfpn.inference.protocols import InferenceConfig, predict_logits
from segfpn.models import SegmentationModel
from segfpn.models.from_mmseg import convert_state_dict
from segfpn.training.converted_checkpoint import save_converted
from tests.parity.conftest import build_mmseg_transform, import_reference, mmseg_config
from tests.parity.test_convert import _randomise_norms

pytestmark = pytest.mark.parity
REPO = Path(__file__).resolve().parents[2]


def mmseg_recipe(depth: int):
    return mmseg_config(f"sem_fpn/fpn_r{depth}_4xb2-80k_cityscapes-512x1024.py")


def test_class_names_and_palette_are_mmsegs(mmseg) -> None:
    from mmseg.datasets import CityscapesDataset as MMSegCityscapes

    assert CITYSCAPES_INFO.classes == tuple(MMSegCityscapes.METAINFO["classes"])
    assert CITYSCAPES_INFO.palette == tuple(tuple(c) for c in MMSegCityscapes.METAINFO["palette"])


@pytest.mark.parametrize("depth", [50, 101])
def test_published_config_is_mmsegs_recipe(depth: int) -> None:
    ours = yaml.safe_load((REPO / f"configs/fpn_r{depth}_cityscapes.yaml").read_text())
    cfg = mmseg_recipe(depth)
    model, data = ours["model"], ours["data"]
    steps = {t["type"]: t for t in cfg.train_pipeline}
    assert data["dataset"] == "cityscapes"
    assert tuple(data["crop_size"]) == tuple(cfg.crop_size) == tuple(steps["RandomCrop"]["crop_size"])
    assert tuple(data["scale"]) == tuple(steps["RandomResize"]["scale"])
    assert tuple(data["ratio_range"]) == tuple(steps["RandomResize"]["ratio_range"])
    assert data["cat_max_ratio"] == steps["RandomCrop"]["cat_max_ratio"] and "PhotoMetricDistortion" in steps
    assert data["batch_size"] == cfg.train_dataloader.batch_size  # per GPU (x4 in mmseg's name)
    test_resize = next(t for t in cfg.test_pipeline if t["type"] == "Resize")
    assert tuple(model["inference"]["test_scale"]) == tuple(test_resize["scale"]) and test_resize["keep_ratio"]
    assert model["inference"]["mode"] == cfg.model.test_cfg["mode"] and model["inference"]["protocol"] == "mmseg"
    opt = cfg.optim_wrapper.optimizer
    assert (model["optimizer"], model["lr"], model["momentum"], model["weight_decay"]) == (
        opt.type.lower(), opt.lr, opt.momentum, opt.weight_decay
    )  # fmt: skip
    (poly,) = cfg.param_scheduler
    assert model["schedule"] == "poly" and model["poly_power"] == poly.power
    assert model["min_lr_ratio"] == pytest.approx(poly.eta_min / opt.lr)
    assert ours["trainer"]["max_steps"] == cfg.train_cfg.max_iters == poly.end
    assert ours["trainer"]["val_check_interval"] == cfg.train_cfg.val_interval
    assert model["backbone_name"] == f"resnet{cfg.model.backbone.depth}c" and cfg.model.backbone.type == "ResNetV1c"


def test_converted_cityscapes_fpn_logits_equal_mmseg(mmseg, tmp_path: Path) -> None:
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = mmseg_recipe(50)
    cfg.model.pretrained = None
    cfg.model.backbone.norm_cfg = cfg.model.decode_head.norm_cfg = {"type": "BN", "requires_grad": True}
    torch.manual_seed(0)
    reference = MODELS.build(cfg.model)
    root = generate_cityscapes(tmp_path / "cityscapes", (0, 1, 0), shape=(64, 128), progress=False)
    dataset = CityscapesDataset(root, "val")
    image, _ = dataset[0]
    _randomise_norms(reference, lambda: reference.decode_head(reference.extract_feat(image[None])))
    meta = {"dataset_meta": {"classes": list(CITYSCAPES_INFO.classes)}, "cfg": cfg.pretty_text}
    conversion = convert_state_dict(reference.state_dict(), meta, "mmseg-1.x")
    assert conversion.unmapped == {} and conversion.unfilled == []
    assert conversion.model_args["num_classes"] == 19 and conversion.model_args["backbone_name"] == "resnet50c"
    assert conversion.classes == list(CITYSCAPES_INFO.classes)
    _, config_path = save_converted(conversion, tmp_path / "fpn_r50_cityscapes.ckpt")
    written = yaml.safe_load(config_path.read_text())  # the config `segfpn convert` writes beside the checkpoint
    assert written["data"]["dataset"] == "cityscapes"
    assert written["model"]["inference"]["test_scale"] == [2048, 1024]
    segmenter = Segmenter.from_checkpoint(tmp_path / "fpn_r50_cityscapes.ckpt")  # the checkpoint alone
    assert segmenter.class_names == CITYSCAPES_INFO.classes and segmenter.inference.test_scale == (2048, 1024)
    model = SegmentationModel(**conversion.model_args)
    model.load_state_dict(conversion.state_dict)
    model.eval()

    # mmseg: its config's test pipeline on the image file, its data preprocessor, EncoderDecoder.predict
    pipeline = import_reference("mmcv.transforms").Compose([build_mmseg_transform(t) for t in cfg.test_pipeline])
    img_path, ann_path = dataset.pairs[0]
    packed = pipeline(dict(img_path=str(img_path), seg_map_path=str(ann_path), reduce_zero_label=False, seg_fields=[]))
    data = reference.data_preprocessor(import_reference("mmengine.dataset").pseudo_collate([packed]), False)
    assert tuple(data["inputs"].shape[-2:]) == (1024, 2048)  # 64x128 resized to fit (2048, 1024)
    with torch.no_grad():
        expected = reference.predict(data["inputs"], data["data_samples"])[0].seg_logits.data[None]

    settings = yaml.safe_load((REPO / "configs/fpn_r50_cityscapes.yaml").read_text())["model"]["inference"]
    ours = predict_logits(model, image[None], InferenceConfig(**settings))
    assert ours.shape == expected.shape == (1, 19, 64, 128)
    diff = (ours - expected).abs().max().item()
    agreement = (ours.argmax(1) == expected.argmax(1)).float().mean().item()
    scale = expected.abs().max().item()
    print(f"\nmmseg Cityscapes R-50 FPN, 64x128 evaluated at 1024x2048: max|diff| {diff:.2e} (max|logit| {scale:.1f})")
    print(f"argmax agreement {agreement:.6f}")
    assert diff <= 5e-5 * max(1.0, scale)  # float32 sums over a 1024x2048 input (measured 1.7e-5 relative)
    assert agreement > 0.999
