"""timm backbones that return four NCHW feature maps (strides 4/8/16/32), chosen from timm's ``feature_info``."""

from __future__ import annotations

import fnmatch
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from timm.models._features import FeatureGetterNet
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from segfpn.errors import ConfigError, DataError
from segfpn.models.swin import PREFIX as SWIN_PREFIX
from segfpn.models.swin import ReferenceSwin, is_mmseg_layout, is_reference_swin, mmseg_to_timm, to_reference

log = logging.getLogger(__name__)

# Backbones whose shapes, padding and checkpoints are covered by segfpn's tests.
TESTED_BACKBONES: tuple[str, ...] = (
    "convnext_tiny",
    "pvt_v2_b0",
    "mmseg_swin_tiny_patch4_window7_224",
    "swin_tiny_patch4_window7_224",
)

# The strides the FPN expects, finest first.
FPN_STRIDES: tuple[int, ...] = (4, 8, 16, 32)

# Families whose windows/position tables are built for one image size: we build them for the
# training crop and let them accept other sizes (multiples of the stride) at inference.
_IMG_SIZE_FAMILIES: tuple[str, ...] = ("swin", "swinv2")


def list_backbones(pattern: str = "*", tested_only: bool = False) -> list[str]:
    """Names of timm models usable as backbones, and the ``mmseg_swin_*`` reference Swins (``tested_only``: the
    ones segfpn's tests cover)."""
    if tested_only:
        return list(TESTED_BACKBONES)
    reference = [SWIN_PREFIX + n for n in timm.list_models("swin_*")]
    return sorted(timm.list_models(pattern) + fnmatch.filter(reference, pattern))


def stride_indices(name: str, feature_info: Sequence[dict], strides: Sequence[int] = FPN_STRIDES) -> tuple[int, ...]:
    """Indices of timm's ``feature_info`` levels with the given reductions (the deepest level of each stride)."""
    found = {int(level["reduction"]): i for i, level in enumerate(feature_info)}
    missing = [s for s in strides if s not in found]
    if missing:
        first = {}
        for level in feature_info:
            first.setdefault(int(level["reduction"]), level["module"])
        has = ", ".join(f"{s} ({module})" for s, module in first.items())
        raise ConfigError(
            f"backbone_name={name!r} has no feature level of stride {'/'.join(map(str, missing))}: the FPN needs "
            f"strides {'/'.join(map(str, strides))}; timm's feature_info of {name!r} has strides {has}"
            + (" (a single-scale model such as a plain ViT does not fit)" if len(found) == 1 else "")
        )
    return tuple(found[s] for s in strides)


def _check_name(name: str, given: str) -> None:
    """``name``: the timm model that ``given`` (the backbone_name, maybe ``mmseg_``-prefixed) asks for."""
    if name not in timm.list_models():
        close = timm.list_models(f"*{name.split('_')[0]}*")[:12]
        raise ConfigError(
            f"backbone_name={given!r} is not a timm model. Tested backbones: {', '.join(TESTED_BACKBONES)}; "
            f"similar timm names: {', '.join(close) or 'none'} (segfpn.models.list_backbones() lists all)."
        )


class TimmBackbone(nn.Module):
    """A timm model in ``features_only`` mode returning NCHW maps, finest first.

    Args:
        name: timm model name.
        pretrained: load timm's ImageNet weights from the hub (needs network access).
        pretrained_path: local checkpoint (``.pth``/``.pt``/``.bin``/``.safetensors``) with timm or
            original-repository key names; missing/unexpected keys are logged.
        img_size: input size the model is built for (Swin-style models only; other sizes still work).
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and stages 1..k.
        out_indices: which of timm's feature levels to return; ``None`` picks the levels of stride 4/8/16/32
            from the model's ``feature_info`` (for a ResNet: ``layer1``..``layer4``, not the stride-2 stem).
        drop_path_rate: stochastic depth rate passed to timm.
    """

    def __init__(
        self,
        name: str = "convnext_tiny",
        pretrained: bool = False,
        pretrained_path: str | None = None,
        img_size: int = 512,
        frozen_stages: int = -1,
        out_indices: Sequence[int] | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        reference = is_reference_swin(name)
        timm_name = name.removeprefix(SWIN_PREFIX) if reference else name
        _check_name(timm_name, name)
        kwargs: dict = {"drop_path_rate": drop_path_rate}
        if timm_name.split("_")[0] in _IMG_SIZE_FAMILIES:
            kwargs.update(img_size=img_size, strict_img_size=False)
        if reference:
            kwargs.update(always_partition=True)  # every block keeps its window and shift, as the reference's
        try:
            # The full model is built once; the feature wrapper is what ``features_only=True, feature_cls="getter"``
            # would build, but with the levels chosen from feature_info (unknown before the model exists).
            model = timm.create_model(timm_name, pretrained=pretrained, **kwargs)
        except Exception as err:  # hub/network errors come in many types
            if not pretrained:
                raise
            raise RuntimeError(
                f"Could not download ImageNet weights for backbone {name!r} ({type(err).__name__}: {err}). "
                "Without network access, pass pretrained=False and pretrained_path=<local .pth or "
                ".safetensors backbone checkpoint> instead."
            ) from err
        if reference:
            model = to_reference(model)
        indices = tuple(out_indices) if out_indices is not None else stride_indices(name, model.feature_info)
        self.body = FeatureGetterNet(model, out_indices=indices, output_fmt="NCHW")
        self.name = name
        self.channels: list[int] = self.body.feature_info.channels()
        self.strides: list[int] = self.body.feature_info.reduction()
        self.size_divisor: int = max(self.strides)
        if pretrained_path:
            self.load_checkpoint(pretrained_path)
        if not -1 <= frozen_stages <= len(self.channels):
            raise ConfigError(f"frozen_stages must be in -1..{len(self.channels)}, got {frozen_stages}")
        self.frozen_stages = frozen_stages
        self._freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))

    # -- weights ---------------------------------------------------------------------------------
    def load_checkpoint(self, path: str | Path) -> nn.modules.module._IncompatibleKeys:
        """Load backbone weights from a local file; returns timm's missing/unexpected key lists."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"pretrained_path={str(path)!r}: no such file")
        state = _read_state_dict(path)
        model = self.body.model
        # timm's own model class (a reference Swin subclasses it): its module converts original-repository keys
        timm_class = next(c for c in type(model).__mro__ if c.__module__.startswith("timm."))
        filter_fn = getattr(sys.modules[timm_class.__module__], "checkpoint_filter_fn", None)
        state = {
            k.removeprefix("module.").removeprefix("backbone.").removeprefix("model."): v for k, v in state.items()
        }
        own = model.state_dict()
        if isinstance(model, ReferenceSwin) and is_mmseg_layout(state):
            state = mmseg_to_timm(state)
        elif filter_fn is not None and (
            len(own.keys() & state.keys()) < len(own) // 2
            # the original Swin's names equal timm's but for the merging layers (stage i's end, not i+1's start)
            or (isinstance(model, SwinTransformer) and "layers.0.downsample.reduction.weight" in state)
        ):
            state = filter_fn(state, model)  # original-repository key names -> timm's
        matched = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
        if not matched:
            raise ConfigError(
                f"pretrained_path={str(path)!r}: none of its {len(state)} tensors fits backbone {self.name!r} "
                f"(first keys: {list(state)[:3]}; expected keys like {list(own)[:3]})."
            )
        mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        result = model.load_state_dict({k: state[k] for k in matched}, strict=False)
        unexpected = sorted(set(state) - set(matched))
        log.info("Loaded %d/%d backbone tensors from %s", len(matched), len(own), path)
        if result.missing_keys:
            log.warning(
                "%d backbone keys missing from %s: %s", len(result.missing_keys), path, result.missing_keys[:10]
            )
        if unexpected:
            log.warning("%d unexpected keys in %s (e.g. classifier head): %s", len(unexpected), path, unexpected[:10])
        if mismatched:
            log.warning("shape mismatch, not loaded: %s", mismatched[:10])
        return nn.modules.module._IncompatibleKeys(result.missing_keys, unexpected)

    # -- freezing --------------------------------------------------------------------------------
    def _frozen_parameters(self) -> list[nn.Parameter]:
        if self.frozen_stages < 0:
            return []
        return [p for stage, p in self._parameter_stages() if stage <= self.frozen_stages]

    def _parameter_stages(self) -> list[tuple[int, nn.Parameter]]:
        """Each parameter's stage: 0 = stem (before the first level); k = level k's module and the modules
        between level k-1 and it (EfficientNet's ``blocks.3`` runs before the stride-16 level ``blocks.4``)."""
        prefixes = [f"model.{m}." for m in self.body.feature_info.module_name()]
        passed, stages = 0, []
        model = self.body.model
        for name, p in self.body.named_parameters():
            own = model.stage_of(name.removeprefix("model.")) if isinstance(model, ReferenceSwin) else None
            if own is not None:  # where the reference's freezing puts it
                stages.append((own, p))
                continue
            level = next((k for k, prefix in enumerate(prefixes) if name.startswith(prefix)), None)
            if level is not None:
                passed = level + 1
                stages.append((passed, p))
            else:
                stages.append((passed + 1 if passed else 0, p))
        return stages

    def _freeze(self) -> None:
        for p in self._frozen_parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> TimmBackbone:
        """Keep frozen modules (their norm statistics, dropout) in eval mode."""
        super().train(mode)
        if mode and self.frozen_stages >= 0:
            frozen = {id(p) for p in self._frozen_parameters()}
            for m in self.body.modules():
                params = list(m.parameters())
                if params and all(id(p) in frozen for p in params):
                    m.eval()
        return self


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"pretrained_path={str(path)!r}: not a readable torch checkpoint ({err})") from err
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ConfigError(f"pretrained_path={str(path)!r}: expected a state dict, found {type(obj).__name__}")
    return obj
