"""timm backbones that return four NCHW feature maps (strides 4/8/16/32)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from segfpn.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Backbones whose shapes, padding and checkpoints are covered by segfpn's tests.
TESTED_BACKBONES: tuple[str, ...] = ("convnext_tiny", "pvt_v2_b0", "swin_tiny_patch4_window7_224")

# Families whose windows/position tables are built for one image size: we build them for the
# training crop and let them accept other sizes (multiples of the stride) at inference.
_IMG_SIZE_FAMILIES: tuple[str, ...] = ("swin", "swinv2")


def list_backbones(pattern: str = "*", tested_only: bool = False) -> list[str]:
    """Names of timm models usable as backbones (``tested_only``: the ones segfpn's tests cover)."""
    if tested_only:
        return list(TESTED_BACKBONES)
    return timm.list_models(pattern)


def _check_name(name: str) -> None:
    if name not in timm.list_models():
        close = timm.list_models(f"*{name.split('_')[0]}*")[:12]
        raise ConfigError(
            f"backbone_name={name!r} is not a timm model. Tested backbones: {', '.join(TESTED_BACKBONES)}; "
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
        out_indices: which feature levels to return (four are needed by the FPN).
        drop_path_rate: stochastic depth rate passed to timm.
    """

    def __init__(
        self,
        name: str = "convnext_tiny",
        pretrained: bool = False,
        pretrained_path: str | None = None,
        img_size: int = 512,
        frozen_stages: int = -1,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        _check_name(name)
        kwargs: dict = {"drop_path_rate": drop_path_rate}
        if name.split("_")[0] in _IMG_SIZE_FAMILIES:
            kwargs.update(img_size=img_size, strict_img_size=False)
        try:
            self.body = timm.create_model(
                name,
                pretrained=pretrained,
                features_only=True,
                out_indices=tuple(out_indices),
                feature_cls="getter",
                **kwargs,
            )
        except Exception as err:  # hub/network errors come in many types
            if not pretrained:
                raise
            raise RuntimeError(
                f"Could not download ImageNet weights for backbone {name!r} ({type(err).__name__}: {err}). "
                "Without network access, pass pretrained=False and pretrained_path=<local .pth or "
                ".safetensors backbone checkpoint> instead."
            ) from err
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
        filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        state = {
            k.removeprefix("module.").removeprefix("backbone.").removeprefix("model."): v for k, v in state.items()
        }
        own = model.state_dict()
        if filter_fn is not None and len(own.keys() & state.keys()) < len(own) // 2:
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
        stage_modules = [f"model.{m}" for m in self.body.feature_info.module_name()]
        trainable = tuple(p + "." for p in stage_modules[self.frozen_stages :])
        return [p for n, p in self.body.named_parameters() if not n.startswith(trainable)]

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
