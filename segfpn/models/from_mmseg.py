"""Import published Semantic FPN checkpoints (mmsegmentation 0.x/1.x, the PVT authors' PVTv2-Seg) into segfpn.

Both layouts keep the model under ``backbone.*``, ``neck.*`` and ``decode_head.*``:

- neck (mmseg ``FPN``): ``neck.lateral_convs.i.conv.*`` and ``neck.fpn_convs.i.conv.*`` -> segfpn's
  ``neck.lateral_convs.i.*`` and ``neck.output_convs.i.*``;
- head (mmseg ``FPNHead``): ``decode_head.scale_heads.i.j.{conv,bn,gn}.*`` -> ``head.scale_heads.i.j.{0,1}.*``
  (the same interleaving of conv blocks and 2x upsampling), ``decode_head.conv_seg.*`` -> ``head.classifier.*``;
- backbone: mmseg's ResNetV1c/ResNetV1d/ResNet -> timm's ``resnet{depth}c``/``d``/plain (the deep stem
  ``stem.0/1/3/4/6/7`` becomes ``conv1.0/1/3/4/6`` and ``bn1``; the variant is read from the key structure, never
  from shapes: resnet50c and resnet50d have the same shapes); PVTv2 in the original repository's names ->
  timm's ``pvt_v2_b*`` through timm's own ``checkpoint_filter_fn``; mmseg's SwinTransformer
  (``stages.i.blocks.j.attn.w_msa.*``) -> ``mmseg_swin_*`` (:mod:`segfpn.models.swin`: the reference's computation,
  its output norms included), the variant read from the embedding width, blocks per stage and window size.

mmseg 0.x and 1.x differ in the checkpoint's wrapping (``meta['CLASSES']``/``meta['config']`` in 0.x,
``meta['dataset_meta']``/``meta['cfg']`` and ``message_hub`` in 1.x), not in the model's key names.
"""

from __future__ import annotations

import pickle
import re
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from segfpn.errors import CheckpointError, DataError
from segfpn.models.segmentation_model import SegmentationModel
from segfpn.models.swin import is_mmseg_layout, mmseg_to_timm

# (blocks per layer, bottleneck) -> depth of mmseg's ResNet / timm's resnet.
_RESNET_DEPTHS: dict[tuple[tuple[int, ...], bool], int] = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}

# (blocks per stage, first embedding width, linear attention) -> timm name (PVTv2 paper, Table 1 / pvtv2.py).
_PVT_V2_VARIANTS: dict[tuple[tuple[int, ...], int, bool], str] = {
    ((2, 2, 2, 2), 32, False): "pvt_v2_b0",
    ((2, 2, 2, 2), 64, False): "pvt_v2_b1",
    ((3, 4, 6, 3), 64, False): "pvt_v2_b2",
    ((3, 4, 6, 3), 64, True): "pvt_v2_b2_li",
    ((3, 4, 18, 3), 64, False): "pvt_v2_b3",
    ((3, 8, 27, 3), 64, False): "pvt_v2_b4",
    ((3, 6, 40, 3), 64, False): "pvt_v2_b5",
}

# (embedding width, blocks per stage, window) -> the reference computation of timm's Swin
_SWIN_VARIANTS: dict[tuple[int, tuple[int, ...], int], str] = {
    (96, (2, 2, 6, 2), 7): "mmseg_swin_tiny_patch4_window7_224",
    (96, (2, 2, 18, 2), 7): "mmseg_swin_small_patch4_window7_224",
    (128, (2, 2, 18, 2), 7): "mmseg_swin_base_patch4_window7_224",
    (128, (2, 2, 18, 2), 12): "mmseg_swin_base_patch4_window12_384",
    (192, (2, 2, 18, 2), 7): "mmseg_swin_large_patch4_window7_224",
    (192, (2, 2, 18, 2), 12): "mmseg_swin_large_patch4_window12_384",
}
_BACKBONE = "backbone.body.model."


@dataclass
class Conversion:
    """A converted checkpoint: SegmentationModel arguments and weights, and what did not map.

    Attributes:
        layout: ``"mmseg-1.x"``, ``"mmseg-0.x"``, ``"pvtv2-seg"`` or ``"mmseg (bare state dict)"``.
        model_args: :class:`SegmentationModel` arguments (backbone_name, num_classes, fpn_channels, ...).
        state_dict: weights with SegmentationModel key names.
        unmapped: source keys that have no place in the segfpn model (with the reason).
        unfilled: SegmentationModel keys the source does not provide (left at their initial values).
        classes: class names stored in the checkpoint's meta data, if any.
        notes: what was inferred and how.
    """

    layout: str
    model_args: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    unmapped: dict[str, str] = field(default_factory=dict)
    unfilled: list[str] = field(default_factory=list)
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """A human-readable summary: layout, model, and every key that did not map either way."""
        lines = [f"layout: {self.layout}", "model: " + ", ".join(f"{k}={v}" for k, v in self.model_args.items())]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"mapped tensors: {len(self.state_dict)}")
        lines.append(f"source keys not mapped: {len(self.unmapped)}")
        lines += [f"  {k}: {why}" for k, why in self.unmapped.items()]
        lines.append(f"model keys not filled (left at initial values): {len(self.unfilled)}")
        lines += [f"  {k}" for k in self.unfilled]
        return "\n".join(lines)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """The state dict, the meta data and the layout (``mmseg-0.x``/``mmseg-1.x``/bare) of a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {str(path)!r} does not exist")
    if _is_torchscript(path):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: a TorchScript archive (an exported model), not a checkpoint; segfpn does not "
            "load TorchScript to read weights (loading it runs its code)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle)
    except Exception as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: not a readable torch file ({err})") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a dict, found {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), dict):
        meta = obj.get("meta") or {}
        state = obj["state_dict"]
        is_1x = "dataset_meta" in meta or "mmengine_version" in meta or "message_hub" in obj
        return state, meta, "mmseg-1.x" if is_1x else "mmseg-0.x"
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}, "mmseg (bare state dict)"
    raise CheckpointError(
        f"checkpoint {str(path)!r}: no 'state_dict' entry and not a bare state dict (top-level keys: {list(obj)[:8]})"
    )


class _Placeholder:
    """Stands for an object of a class that is not installed (e.g. mmengine's HistoryBuffer in ``message_hub``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _TolerantUnpickler(pickle.Unpickler):
    """Builds only what torch's ``weights_only`` loader allows (tensors, storages, containers, plain types); any
    other class, installed or not, becomes a :class:`_Placeholder`, so a downloaded file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        return _SAFE_GLOBALS.get(f"{module}.{name}", _Placeholder)


# mmengine checkpoints pickle training state (message_hub, schedulers) with mmengine's classes, which
# ``weights_only=True`` refuses: the weights must read without mmengine installed and without trusting the file.
_SAFE_GLOBALS = torch._weights_only_unpickler._get_allowed_globals()
# ``load`` too: torch's legacy (non-zip) reader unpickles its header with it before any Unpickler is built
_tolerant_pickle = types.SimpleNamespace(
    Unpickler=_TolerantUnpickler, load=lambda f, **kw: _TolerantUnpickler(f, **kw).load(), __name__="tolerant_pickle"
)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (torch.load hands it to torch.jit.load, which runs the code it holds)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def convert_state_dict(
    state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None, layout: str = ""
) -> Conversion:
    """Map an mmseg/PVTv2-Seg Semantic FPN state dict onto a :class:`SegmentationModel`."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise CheckpointError(
            f"no 'backbone.*' keys: not an mmseg/PVTv2-Seg segmentor checkpoint (keys: {list(state)[:5]})"
        )
    unmapped: dict[str, str] = {}
    notes: list[str] = []
    if "patch_embed1.proj.weight" in backbone:
        backbone_name, mapped = _convert_pvt_v2(backbone, notes)
        layout = "pvtv2-seg" if layout in ("", "mmseg-0.x", "mmseg (bare state dict)") else layout
    elif "layer1.0.conv1.weight" in backbone:
        backbone_name, mapped = _convert_resnet(backbone, meta or {}, notes)
    elif is_mmseg_layout(backbone):
        backbone_name, mapped = _convert_swin(backbone, notes)
    else:
        raise CheckpointError(
            "unknown backbone layout: expected mmseg's ResNet ('backbone.layer1.0.conv1.weight'), its "
            "SwinTransformer ('backbone.stages.0.blocks.0.attn.w_msa.qkv.weight') or the original PVTv2 names "
            f"('backbone.patch_embed1.proj.weight'); found e.g. {list(backbone)[:5]}"
        )
    converted = {_BACKBONE + k: v for k, v in mapped.items()}
    head_args = _convert_neck_and_head(state, converted, unmapped, notes)
    for k in state:
        if not k.startswith(("backbone.", "neck.", "decode_head.")) and k not in unmapped:
            unmapped[k] = "not part of backbone/neck/decode_head (e.g. auxiliary_head)"
    model_args = {"backbone_name": backbone_name, **head_args}
    conversion = Conversion(layout or "mmseg", model_args, converted, unmapped, notes=notes)
    conversion.classes = _classes(meta or {})
    _check_against_model(conversion)
    return conversion


def _check_against_model(conversion: Conversion) -> None:
    """Drop tensors the model has no key for (reported) and fail on shape mismatches."""
    model = SegmentationModel(pretrained=False, **conversion.model_args)
    own = model.state_dict()
    mismatched = [
        f"{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in conversion.state_dict.items()
        if k in own and own[k].shape != v.shape
    ]
    if mismatched:
        raise CheckpointError(f"converted tensors do not fit {conversion.model_args}: {mismatched[:10]}")
    for k in [k for k in conversion.state_dict if k not in own]:
        conversion.unmapped[k] = "no such key in the segfpn model"
        del conversion.state_dict[k]
    conversion.unfilled = [k for k in own if k not in conversion.state_dict]


def _classes(meta: dict[str, Any]) -> list[str] | None:
    classes = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
    return list(classes) if classes is not None else None


def _config_text(meta: dict[str, Any]) -> str:
    text = meta.get("cfg") or meta.get("config") or ""
    return text if isinstance(text, str) else ""


# -- backbones ------------------------------------------------------------------------------------------


def _convert_resnet(
    backbone: dict[str, torch.Tensor], meta: dict[str, Any], notes: list[str]
) -> tuple[str, dict[str, torch.Tensor]]:
    blocks = tuple(
        len({m.group(1) for k in backbone if (m := re.match(rf"layer{i}\.(\d+)\.", k))}) for i in range(1, 5)
    )
    bottleneck = "layer1.0.conv3.weight" in backbone
    depth = _RESNET_DEPTHS.get((blocks, bottleneck))
    if depth is None:
        raise CheckpointError(f"ResNet with {blocks} blocks per layer (bottleneck={bottleneck}) has no timm equivalent")
    deep_stem = "stem.0.weight" in backbone
    avg_down = "layer1.0.downsample.2.weight" in backbone  # AvgPool, conv, norm
    suffix = {(True, False): "c", (True, True): "d", (False, False): ""}.get((deep_stem, avg_down))
    if suffix is None:
        raise CheckpointError("ResNet with avg_down but without the deep stem has no timm equivalent")
    config = _config_text(meta)
    if "style='caffe'" in config or 'style="caffe"' in config:
        raise CheckpointError("caffe-style ResNet (stride on the 1x1 conv) has no timm equivalent")
    if any(f"dilations=({d}" in config for d in "2468") or "dilations=(1, 1, 2" in config:
        raise CheckpointError("dilated ResNet (dilations in the checkpoint's config) is not supported by timm's resnet")
    name = f"resnet{depth}{suffix}"
    kind = {"c": "ResNetV1c (deep stem)", "d": "ResNetV1d (deep stem, avg_down)", "": "ResNet (ResNetV1b)"}[suffix]
    notes.append(f"backbone: mmseg {kind}, depth {depth} from blocks per layer {blocks} -> timm {name}")
    stem = {"stem.0.": "conv1.0.", "stem.1.": "conv1.1.", "stem.3.": "conv1.3.", "stem.4.": "conv1.4."}
    stem.update({"stem.6.": "conv1.6.", "stem.7.": "bn1."})
    mapped = {}
    for k, v in backbone.items():
        prefix = next((p for p in stem if k.startswith(p)), None)
        mapped[stem[prefix] + k.removeprefix(prefix) if prefix else k] = v
    return name, mapped


def _convert_pvt_v2(backbone: dict[str, torch.Tensor], notes: list[str]) -> tuple[str, dict[str, torch.Tensor]]:
    from timm.models.pvt_v2 import checkpoint_filter_fn

    depths = tuple(
        len({m.group(1) for k in backbone if (m := re.match(rf"block{i}\.(\d+)\.", k))}) for i in range(1, 5)
    )
    width = backbone["patch_embed1.proj.weight"].shape[0]
    linear = "block4.0.attn.sr.weight" in backbone  # stage 4 has spatial reduction only in linear attention
    name = _PVT_V2_VARIANTS.get((depths, width, linear))
    if name is None:
        raise CheckpointError(f"PVTv2 with blocks per stage {depths}, width {width}, linear={linear}: no timm pvt_v2")
    notes.append(f"backbone: PVTv2 with blocks per stage {depths}, width {width} -> timm {name}")
    return name, checkpoint_filter_fn(backbone, None)


def _convert_swin(backbone: dict[str, torch.Tensor], notes: list[str]) -> tuple[str, dict[str, torch.Tensor]]:
    width = backbone["patch_embed.projection.weight"].shape[0]
    depths = tuple(
        len({m.group(1) for k in backbone if (m := re.match(rf"stages\.{i}\.blocks\.(\d+)\.", k))}) for i in range(4)
    )
    table = backbone["stages.0.blocks.0.attn.w_msa.relative_position_bias_table"]
    window = (int(round(table.shape[0] ** 0.5)) + 1) // 2  # (2 * window - 1) ** 2 rows
    name = _SWIN_VARIANTS.get((width, depths, window))
    if name is None:
        raise CheckpointError(
            f"Swin with width {width}, blocks per stage {depths}, window {window}: no timm swin_*_patch4 model"
        )
    notes.append(f"backbone: mmseg SwinTransformer, width {width}, blocks {depths}, window {window} -> {name}")
    return name, mmseg_to_timm(backbone)


# -- neck and head --------------------------------------------------------------------------------------


def _convert_neck_and_head(
    state: dict[str, torch.Tensor],
    out: dict[str, torch.Tensor],
    unmapped: dict[str, str],
    notes: list[str],
) -> dict[str, Any]:
    norm = None
    for k, v in state.items():
        if m := re.fullmatch(r"neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)", k):
            target = "lateral_convs" if m.group(1) == "lateral_convs" else "output_convs"
            out[f"neck.{target}.{m.group(2)}.{m.group(3)}"] = v
        elif m := re.fullmatch(r"decode_head\.scale_heads\.(\d+)\.(\d+)\.(conv|bn|gn)\.(.+)", k):
            layer = "0" if m.group(3) == "conv" else "1"
            if m.group(3) != "conv":
                norm = m.group(3)
            out[f"head.scale_heads.{m.group(1)}.{m.group(2)}.{layer}.{m.group(4)}"] = v
        elif m := re.fullmatch(r"decode_head\.conv_seg\.(weight|bias)", k):
            out[f"head.classifier.{m.group(1)}"] = v
        elif k.startswith(("neck.", "decode_head.")):
            unmapped[k] = "not a Semantic FPN neck/head tensor segfpn has"
    if "head.classifier.weight" not in out or "neck.lateral_convs.0.weight" not in out:
        raise CheckpointError(
            "no 'decode_head.conv_seg.weight' or 'neck.lateral_convs.0.conv.weight': not a Semantic FPN"
        )
    if norm is None:
        raise CheckpointError("the FPNHead's scale heads have no norm layer (bn/gn): segfpn's head always has one")
    num_classes, head_channels = out["head.classifier.weight"].shape[:2]
    fpn_channels = out["neck.lateral_convs.0.weight"].shape[0]
    notes.append(
        f"neck/head: num_classes={num_classes} (conv_seg), fpn_channels={fpn_channels} (lateral conv), "
        f"head_channels={head_channels}, norm={norm} (SyncBN and BN checkpoints load into BatchNorm2d)"
    )
    if norm == "gn":
        notes.append("GroupNorm: segfpn uses 32 groups; the checkpoint's group count is not stored in its weights")
    return {
        "num_classes": int(num_classes),
        "fpn_channels": int(fpn_channels),
        "head_channels": int(head_channels),
        "norm": norm,
    }
