"""The model options: defined once (SegmentationModel), flat ``--model.*`` on the CLI, each with a help line."""

from __future__ import annotations

import contextlib
import inspect
import io
import re
from pathlib import Path

import pytest
import torch

from segfpn.cli import main
from segfpn.models import SegmentationModel
from segfpn.models.segmentation_model import ARCHITECTURE_OPTIONS
from segfpn.training.losses import LOSSES
from segfpn.training.module import SegmentationModule

# "  --model.x METAVAR[, --model.x+ METAVAR]  help text" (the help may start on the next lines)
OPTION_LINE = re.compile(r"^  (--model\.[\w.]+)\b(?: [A-Z_{},a-z\[\].]+)?(?:, --model\.\S+(?: \S+)?)?(?:\s{2,}(.*))?$")


@pytest.fixture(scope="module")
def fit_help() -> dict[str, str]:
    """``segfpn fit --help`` as {option: help text without its type/default suffix}, for every ``--model.*``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("COLUMNS", "250")  # no wrapping inside words such as "squeeze-excitation"
    mp.setenv("WANDB_MODE", "offline")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            main(["fit", "--help"])
    finally:
        mp.undo()
    assert exit_info.value.code in (0, None)
    options: dict[str, str] = {}
    current = None
    for line in out.getvalue().splitlines():
        match = OPTION_LINE.match(line)
        if match:
            current = match.group(1)
            options[current] = match.group(2) or ""
        elif current and line.startswith("      "):
            options[current] += " " + line.strip()
        else:
            current = None
    return {k: re.sub(r"\s*\(type: .*\)\s*$", "", v).strip() for k, v in options.items()}


def test_every_model_option_has_a_help_line(fit_help: dict[str, str]) -> None:
    module_args = [p for p in inspect.signature(SegmentationModule).parameters if p != "model_options"]
    expected = {f"--model.{name}" for name in module_args + list(ARCHITECTURE_OPTIONS)}
    expected -= {"--model.num_classes", "--model.dataset_info"}  # linked from the data, not options
    assert expected <= set(fit_help), sorted(expected - set(fit_help))
    assert len(fit_help) >= 39
    empty = sorted(name for name, text in fit_help.items() if not text)
    assert not empty, f"options without a help line: {empty}"


@pytest.mark.parametrize(
    "option, choices",
    [
        ("attention", ["se", "cbam", "none"]),
        ("loss", [*LOSSES, "ce+0.5*dice"]),
        ("upsample_mode", ["nearest", "bilinear", "transposed"]),
        ("norm", ["bn", "gn"]),
        ("fusion", ["sum", "attention"]),
        ("schedule", ["poly", "cosine", "constant"]),
        ("optimizer", ["adamw", "sgd"]),
        ("class_weight", ["inverse_log", "inverse_sqrt", "inverse"]),
        ("inference", ["protocol", "slide", "flip", "--model.inference.help"]),
    ],
)
def test_help_lists_the_choices(fit_help: dict[str, str], option: str, choices: list[str]) -> None:
    text = fit_help[f"--model.{option}"]
    missing = [c for c in choices if c not in text]
    assert not missing, f"--model.{option} help does not name {missing}: {text!r}"


def test_inference_fields_have_help_lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(SystemExit):
        main(["fit", "--model.inference.help", "InferenceConfig"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  --model.inference.")]
    assert len(lines) >= 8
    bare = [line.split()[0] for line in lines if re.search(r"\s{2,}\(type:", line)]
    assert not bare, f"inference fields without a help line: {bare}"


def test_architecture_options_are_defined_only_in_segmentation_model() -> None:
    module_params = set(inspect.signature(SegmentationModule).parameters)
    model_params = set(inspect.signature(SegmentationModel).parameters)
    assert module_params & model_params == {"num_classes"}
    assert {"backbone_name", "fpn_channels", "attention", "aux_classifiers"} <= set(ARCHITECTURE_OPTIONS)
    with pytest.raises(TypeError, match="num_classes"):
        SegmentationModel(backbone_name="resnet18")  # no dataset's class count as a default
    with pytest.raises(TypeError, match="fpn_chanels"):
        SegmentationModule(3, backbone_name="resnet18", fpn_chanels=32)  # a typo is not swallowed by **model_options


def test_module_passes_options_on_and_checkpoints_keep_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = SegmentationModule(3, backbone_name="resnet18", fpn_channels=16, head_channels=8, lr=1e-3).eval()
    assert module.model.backbone.channels == [64, 128, 256, 512]  # resnet18's
    assert module.model.head.classifier.out_channels == 3
    hparams = dict(module.hparams)
    # every architecture option is stored, the defaults too, so a checkpoint names its network
    assert {k: hparams[k] for k in ("backbone_name", "fpn_channels", "head_channels", "norm", "img_size")} == {
        "backbone_name": "resnet18",
        "fpn_channels": 16,
        "head_channels": 8,
        "norm": "bn",
        "img_size": 512,
    }
    assert set(ARCHITECTURE_OPTIONS) <= set(hparams)
    assert dict(module.hparams_initial) == hparams  # what loggers record
    path = tmp_path / "m.ckpt"
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": hparams, "pytorch-lightning_version": "2.6"}
    torch.save(checkpoint, path)
    loaded = SegmentationModule.load_from_checkpoint(path, map_location="cpu").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(module(x)["p0"], loaded(x)["p0"])


def test_flat_cli_options_are_parsed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["--data.embedded=true", "--model.backbone_name=resnet18", "--model.fpn_channels=32", "--print_config"]
    with pytest.raises(SystemExit):
        main(["fit", *args])
    printed = capsys.readouterr().out
    model = re.search(r"^model:\n((?:  .*\n)+)", printed, re.M).group(1)
    assert "  backbone_name: resnet18" in model and "  fpn_channels: 32" in model
    assert "init_args" not in model and "model_options" not in model  # flat, as sweeps and experiments write them


def test_an_unknown_optimizer_or_schedule_is_named_by_the_one_check() -> None:
    from segfpn.errors import ConfigError
    from segfpn.training.optim import build_optimizer, lr_factor

    with pytest.raises(ConfigError, match=r"model.optimizer must be one of 'adamw', 'sgd', got 'adam'"):
        SegmentationModule(3, backbone_name="resnet18", pretrained=False, optimizer="adam")
    with pytest.raises(ConfigError, match=r"model.schedule must be one of 'poly', 'cosine', 'constant', got 'step'"):
        SegmentationModule(3, backbone_name="resnet18", pretrained=False, schedule="step")
    with pytest.raises(ConfigError, match=r"^schedule must be one of .* got 'step'"):
        lr_factor(1, 10, "step")
    with pytest.raises(ConfigError, match=r"^optimizer must be one of .* got 'adam'"):
        build_optimizer([], "adam", 0.1)
