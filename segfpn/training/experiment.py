"""Run the variants of an experiment (an FPN ablation, a loss or sampler comparison...) and tabulate them.

An experiment file (``experiments/*.yaml``)::

    name: fpn_ablation
    base: configs/demo.yaml          # the LightningCLI config every variant starts from
    args: ["--trainer.max_steps=240"]  # shared command-line overrides (optional)
    variants:
      baseline: {}
      no_lateral: {model.lateral_connections: false}

Each variant trains in ``<out>/<name>/<variant>/`` and is then validated with its best checkpoint; its
scores land in ``results/`` there. A variant whose final results exist is not run again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segfpn.errors import ConfigError, DataError
from segfpn.models.segmentation_model import model_arguments
from segfpn.packaged_configs import resolve_config
from segfpn.text_files import load_yaml, load_yaml_file
from segfpn.training.callbacks.preemption import stop_exit_code, stopped_by_signal


@dataclass
class Experiment:
    """A named set of variants of one base config."""

    name: str
    base: Path
    variants: dict[str, dict[str, Any]]
    args: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> Experiment:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"experiment file {str(path)!r} does not exist")
        spec = load_yaml_file(path, "experiment file") or {}
        missing = {"name", "base", "variants"} - set(spec)
        if missing:
            raise ConfigError(f"experiment file {str(path)!r} lacks {sorted(missing)} (see segfpn.training.experiment)")
        if not isinstance(spec["variants"], dict) or not spec["variants"]:
            raise ConfigError(f"experiment file {str(path)!r}: 'variants' must map names to overrides")
        return cls(
            spec["name"],
            Path(resolve_config(str(spec["base"]), "experiment base")),  # a packaged config outside the clone too
            {k: v or {} for k, v in spec["variants"].items()},
            list(spec.get("args", [])),
        )

    def variant_args(self, variant: str, root: Path) -> list[str]:
        """LightningCLI arguments (after the subcommand) for one variant whose run folder is ``root``."""
        overrides = [f"--{key}={_cli_value(value)}" for key, value in self.variants[variant].items()]
        return [
            "--config",
            str(self.base),
            *self.args,
            *overrides,
            f"--run_dir={root}",  # one run folder per variant (segfpn.training.runs)
        ]

    def model_overrides(self, variant: str) -> dict[str, Any]:
        """The variant's ``model.*`` overrides as SegmentationModel keyword arguments."""
        return {k.split(".", 1)[1]: v for k, v in self.variants[variant].items() if k.startswith("model.")}

    def model_options(self, variant: str, extra_args: list[str] | None = None) -> dict[str, Any]:
        """The SegmentationModel keyword arguments of a variant's network, as its training run gets them: the base
        config's ``model`` section, then the shared ``args``, the variant's overrides and ``extra_args`` (the
        command line's); ``num_classes`` from the base config's data. The one reading of the base config that
        ``segfpn cost`` and ``segfpn experiment`` share."""
        dotted = {**_dotted_args(self.args), **self.variants[variant], **_dotted_args(extra_args or [])}
        config = load_yaml_file(self.base, "base config") if self.base.is_file() else None
        if not isinstance(config, dict):
            raise ConfigError(
                f"experiment {self.name!r}: base config {str(self.base)!r} is not a readable YAML mapping"
            )
        model = {**_init_args(config.get("model")), **_section(dotted, "model")}
        data = {**_init_args(config.get("data")), **_section(dotted, "data")}
        if "num_classes" not in model:
            model["num_classes"] = data_num_classes(config.get("data"), data)
        return model_arguments(model)


def _dotted_args(args: list[str]) -> dict[str, Any]:
    """``["--model.fpn_channels=64", ...]`` -> ``{"model.fpn_channels": 64}`` (values read as YAML, like the CLI)."""
    pairs = (a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    return {key: load_yaml(value, f"--{key}") for key, value in pairs}


def _section(dotted: dict[str, Any], name: str) -> dict[str, Any]:
    return {k.split(".", 1)[1]: v for k, v in dotted.items() if k.startswith(name + ".")}


def _init_args(section: Any) -> dict[str, Any]:
    """A config section's arguments, written flat or as ``class_path``/``init_args``."""
    if not isinstance(section, dict):
        return {}
    return dict(section.get("init_args") or {}) if "class_path" in section else dict(section)


def data_num_classes(section: Any, init_args: dict[str, Any]) -> int:
    """The class count of the DataModule a config's ``data`` section describes (``class_path``/``init_args``, or
    the init arguments of the CLI's default DataModule); building it reads no data."""
    from segfpn.datasets.datamodule import datamodule_class

    class_path = section.get("class_path") if isinstance(section, dict) else None
    return int(datamodule_class(class_path)(**init_args).num_classes)


def _cli_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def final_results(run_dir: Path, stage: str = "validate_val") -> dict | None:
    """The latest ``results/<stage>_step*.json`` of a run (None when the run has none); stages are
    ``fit_val`` (validations during training), ``validate_val`` and ``test_test``."""
    files = sorted((run_dir / "results").glob(f"{stage}_step*.json"))
    return json.loads(files[-1].read_text()) if files else None


def run_experiment(
    experiment: Experiment, out: Path, only: list[str] | None = None, extra_args: list[str] | None = None
) -> dict[str, Path]:
    """Train and validate every variant (skipping finished ones); returns variant -> run folder."""
    from segfpn.training.cli import run_cli

    runs: dict[str, Path] = {}
    names = [v for v in experiment.variants if not only or v in only]
    unknown = sorted(set(only or []) - set(experiment.variants))
    if unknown:
        raise ConfigError(f"unknown variants {unknown}; {experiment.name} has {list(experiment.variants)}")
    for i, variant in enumerate(names, start=1):
        root = out / experiment.name / variant
        runs[variant] = root
        done = root / "results" / "final.json"
        if done.is_file():
            print(f"[{i}/{len(names)}] {variant}: done already ({done})")
            continue
        print(f"[{i}/{len(names)}] {variant}: training in {root}", flush=True)
        args = experiment.variant_args(variant, root) + list(extra_args or [])
        fit = run_cli(["fit", *args, "--ckpt_path=last"])  # an interrupted variant resumes
        if stopped_by_signal(fit.trainer.callbacks):
            # SIGTERM/SIGINT or a Slurm pre-emption: the variant is not finished; no validation, no final.json
            raise SystemExit(stop_exit_code(fit.trainer.callbacks))
        best = "best" if (root / "checkpoints" / "best.ckpt").is_file() else "last"  # no validation ran: last
        run_cli(["validate", *args, f"--ckpt_path={best}"])
        final = final_results(root)
        done.write_text(json.dumps(final))
    return runs
