"""Bad inputs through the real ``segfpn`` command: exit code 2 and one ``segfpn: error:`` line that names the
file or option, no traceback (unless SEGFPN_DEBUG=1); bugs keep their traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segfpn.errors import ConfigError, UserError, handle_errors


def _segfpn(*args: str, cwd: Path, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    env.pop("SEGFPN_DEBUG", None)
    if debug:
        env["SEGFPN_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "segfpn", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _validate_args(root: Path, data: Path) -> list[str]:
    return [
        "validate",
        "--model.backbone_name=pvt_v2_b0",
        "--model.fpn_channels=16",
        "--model.head_channels=16",
        f"--data.data_root={data}",
        "--data.num_workers=0",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
    ]


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``segfpn: error:`` line, after checking the exit code and the absence of a traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("segfpn: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.fixture
def truncated_ckpt(tmp_path: Path) -> Path:
    """A real checkpoint-format file (torch.save zip) cut in the middle, as a kill during the write leaves it."""
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(64, 64)}, "global_step": 3}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_text_file_as_ckpt_path(tmp_path: Path, samples_root: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    line = _one_error_line(_segfpn(*_validate_args(tmp_path, samples_root), f"--ckpt_path={text}", cwd=tmp_path))
    assert "--ckpt_path" in line and str(text) in line
    assert "is not a checkpoint: expected a zip archive" in line and "found a 17-byte file" in line


def test_truncated_checkpoint(tmp_path: Path, samples_root: Path, truncated_ckpt: Path) -> None:
    result = _segfpn(*_validate_args(tmp_path, samples_root), f"--ckpt_path={truncated_ckpt}", cwd=tmp_path)
    line = _one_error_line(result)
    assert str(truncated_ckpt) in line and "truncated" in line
    assert "hint: use another checkpoint" in result.stderr


def test_missing_checkpoint(tmp_path: Path, samples_root: Path) -> None:
    line = _one_error_line(_segfpn(*_validate_args(tmp_path, samples_root), "--ckpt_path=gone.ckpt", cwd=tmp_path))
    assert "--ckpt_path 'gone.ckpt' does not exist" in line


def test_loss_weight_that_is_not_a_number(tmp_path: Path, samples_root: Path) -> None:
    line = _one_error_line(_segfpn(*_validate_args(tmp_path, samples_root), "--model.loss=ce+x*dice", cwd=tmp_path))
    assert "model.loss='ce+x*dice'" in line and "weight of 'dice' must be a number, found 'x'" in line


def test_num_classes_comes_from_the_data(tmp_path: Path, samples_root: Path) -> None:
    result = _segfpn(*_validate_args(tmp_path, samples_root), "--model.num_classes=10", cwd=tmp_path)
    line = _one_error_line(result)
    assert "--model.num_classes cannot be set" in line and "comes from the data" in line
    assert "hint: the number of classes changes only with the dataset" in result.stderr
    assert "usage:" not in result.stderr  # the parser's usage text is not printed


def test_bad_option_value_is_one_line(tmp_path: Path, samples_root: Path) -> None:
    result = _segfpn(*_validate_args(tmp_path, samples_root), "--model.lr=fast", cwd=tmp_path)
    line = _one_error_line(result)
    assert '"model.lr"' in line and "fast" in line and "usage:" not in result.stderr


def test_file_as_data_root(tmp_path: Path) -> None:
    data = tmp_path / "ADEChallengeData2016.zip"
    data.write_bytes(b"PK")
    line = _one_error_line(_segfpn(*_validate_args(tmp_path, data), cwd=tmp_path))
    assert str(data) in line and "is not a folder" in line


def test_analysis_command_with_a_bad_checkpoint(tmp_path: Path, truncated_ckpt: Path) -> None:
    # the checkpoint as the positional CKPT: the older spelling of --ckpt_path stays accepted
    line = _one_error_line(_segfpn("analyze", str(truncated_ckpt), cwd=tmp_path))
    assert str(truncated_ckpt) in line and "truncated" in line


@pytest.mark.parametrize("command", ["analyze", "validate"])
def test_an_mmseg_checkpoint_is_named_with_the_convert_hint(tmp_path: Path, samples_root: Path, command: str) -> None:
    """An mmseg ``.pth`` (meta + backbone./decode_head. weights) is a zip torch file, but not segfpn's."""
    pth = tmp_path / "fpn_r50_512x512_160k_ade20k.pth"
    state = {"backbone.conv1.weight": torch.zeros(8, 3, 7, 7), "decode_head.conv_seg.weight": torch.zeros(150, 8, 1, 1)}
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": state}, pth)
    args = (
        ["analyze", "--ckpt_path", str(pth)]
        if command == "analyze"
        else [*_validate_args(tmp_path, samples_root), f"--ckpt_path={pth}"]
    )
    result = _segfpn(*args, cwd=tmp_path)
    line = _one_error_line(result)
    assert f"'{pth}' is not a segfpn checkpoint" in line and "found keys ['meta', 'state_dict']" in line
    assert "hint: an mmsegmentation, PVT or timm checkpoint? `segfpn convert FILE`" in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path, samples_root: Path) -> None:
    args = [*_validate_args(tmp_path, samples_root), "--model.loss=ce+x*dice"]
    result = _segfpn(*args, cwd=tmp_path, debug=True)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "parse_loss_spec" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("segfpn: error: model.loss=")
    flag = _segfpn(*args, "--debug", cwd=tmp_path)
    assert flag.returncode == 2 and "Traceback" in flag.stderr


def test_bugs_keep_their_traceback_and_user_errors_stay_value_errors(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ZeroDivisionError), handle_errors():
        _ = 1 / 0
    with pytest.raises(SystemExit) as stop, handle_errors():
        raise RuntimeError("while loading") from ConfigError("data.batch_size must be positive", hint="use 8")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "segfpn: error: data.batch_size must be positive\nhint: use 8\n"
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, UserError)


def test_corrupt_image_read_in_a_dataloader_worker(tmp_path: Path, samples_root: Path) -> None:
    import shutil

    data = tmp_path / "ADEChallengeData2016"
    shutil.copytree(samples_root, data)
    image = sorted((data / "images" / "validation").iterdir())[0]
    image.write_bytes(b"not a jpeg" * 10)
    args = [a.replace("num_workers=0", "num_workers=1") for a in _validate_args(tmp_path, data)]
    line = _one_error_line(_segfpn(*args, cwd=tmp_path))
    assert line.startswith(f"segfpn: error: cannot read image '{image}'")


def test_report_of_a_missing_folder(tmp_path: Path) -> None:
    line = _one_error_line(_segfpn("report", str(tmp_path / "nowhere"), cwd=tmp_path))
    assert f"report folder '{tmp_path / 'nowhere'}' is not a folder" in line


@pytest.mark.parametrize(
    "args, option",
    [
        (["summary", "--size", "-5", "-5"], "--size"),
        (["summary", "--size", "0", "64"], "--size"),
        (["cost", "attention", "--size", "64", "-1"], "--size"),
        (["browse-data", "--n", "0"], "--n"),
    ],
)
def test_a_size_or_count_below_one_is_one_line_naming_the_option(
    args: list[str], option: str, capsys: pytest.CaptureFixture
) -> None:
    from segfpn.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a positive integer, got" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "option, message",
    [
        ("--data.scale=[0, 0]", "data.scale must be (long side, short side) in pixels, both positive; got [0, 0]"),
        ("--data.ratio_range=[2.0, 0.5]", "data.ratio_range must be (min, max) with 0 < min <= max"),
        ("--model.inference.test_scale=[-512, 512]", "model.inference.test_scale must be (long side, short side)"),
    ],
)
def test_a_size_that_cannot_work_is_refused_before_training(
    tmp_path: Path, synthetic_root: Path, option: str, message: str
) -> None:
    from segfpn.training.cli import run_cli
    from tests.test_cli import tiny_args

    with pytest.raises(ValueError) as error:  # ConfigError, or jsonargparse's ValueError quoting it (at parsing)
        run_cli(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=2), option])
    assert message in str(error.value)
    assert not list(tmp_path.rglob("*.ckpt"))  # no step trained


@pytest.mark.parametrize("value", ["'void'", "2.5", "300", "true"])
def test_a_classes_file_ignore_index_that_is_not_a_label_value_is_named(tmp_path: Path, value: str) -> None:
    from segfpn.datasets.folder import load_classes_file

    path = tmp_path / "classes.yaml"
    path.write_text(f"classes: [sky, road]\nignore_index: {value}\n")
    with pytest.raises(ConfigError, match=rf"classes file '{path}': ignore_index must be an integer from 0 to 255"):
        load_classes_file(path)
    path.write_text("classes: [sky, road]\nignore_index: 2\n")
    assert load_classes_file(path).info.ignore_index == 2


def _alias_bomb(levels: int = 9) -> str:
    """A few hundred bytes of YAML whose nested aliases stand for 10**levels strings (the "billion laughs")."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_given_as_config_is_one_line_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(_alias_bomb())
    assert len(config.read_bytes()) < 1000
    line = _one_error_line(_segfpn("fit", "--config", str(config), cwd=tmp_path))
    assert f"--config '{config}': its YAML aliases expand to more than 1,000,000 values" in line


def test_a_config_that_is_not_yaml_is_still_one_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  lr: [1, 2\n")
    assert "broken.yaml" in _one_error_line(_segfpn("fit", "--config", str(config), cwd=tmp_path))


def test_every_yaml_reader_bounds_alias_expansion_and_keeps_small_aliases(tmp_path: Path) -> None:
    import jsonargparse
    import yaml

    from segfpn.datasets.folder import load_classes_file
    from segfpn.text_files import bound_jsonargparse, expanded_size, load_yaml
    from segfpn.training.experiment import Experiment

    text = "a: &x [1, 2]\nb: *x\nc: {d: *x}\n"  # a legitimate use: root + (key + 3) * 2 + key + (map + key + 3)
    assert expanded_size(yaml.compose(text, Loader=yaml.SafeLoader)) == 15
    assert load_yaml(text, "t") == {"a": [1, 2], "b": [1, 2], "c": {"d": [1, 2]}}
    classes = tmp_path / "classes.yaml"
    classes.write_text(_alias_bomb() + "classes: *l8\n")
    with pytest.raises(ConfigError, match=rf"classes file '{classes}': its YAML aliases expand to more than"):
        load_classes_file(classes)
    spec = tmp_path / "exp.yaml"
    spec.write_text(_alias_bomb() + "name: x\nbase: demo\nvariants: {a: {}}\n")
    with pytest.raises(ConfigError, match=rf"experiment file '{spec}': its YAML aliases expand"):
        Experiment.load(spec)
    with pytest.raises(ConfigError, match="recursive|expand to more than"):
        load_yaml("a: &a [*a]\n", "t")
    bound_jsonargparse()
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--x", type=list)
    assert parser.parse_args(["--x=[&a 1, *a]"]).x == [1, 1]
    with pytest.raises(Exception, match="its YAML aliases expand to more than"):
        parser.parse_args(["--x=" + "[" + _alias_bomb().replace("\n", ", ").rstrip(", ") + "]"])


def test_a_run_folder_or_checkpoint_that_cannot_be_written_is_one_line_naming_it(
    tmp_path: Path, synthetic_root: Path
) -> None:
    import resource
    import signal

    from tests.test_cli import tiny_args

    args = ["fit", *tiny_args(tmp_path / "runs", synthetic_root, max_steps=1), "--trainer.logger=false"]
    line = _one_error_line(_segfpn(*args, "--run_dir=/proc/no-such-folder/run", cwd=tmp_path))
    assert "'/proc/no-such-folder': No such file or directory (ENOENT)" in line
    (tmp_path / "a-file").write_text("")
    line = _one_error_line(_segfpn(*args, f"--run_dir={tmp_path / 'a-file' / 'run'}", cwd=tmp_path))
    assert f"'{tmp_path / 'a-file'}" in line and "Not a directory (ENOTDIR)" in line

    def small_files() -> None:  # a checkpoint cannot be written whole, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("SEGFPN_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "segfpn", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
    )
    line = _one_error_line(result)
    assert "checkpoints/last.ckpt': File too large (EFBIG)" in line
    assert not list((tmp_path / "runs").rglob("*.ckpt")) and not list((tmp_path / "runs").rglob("*.tmp"))
