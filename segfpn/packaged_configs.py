"""The configs shipped with segfpn (the repository's ``configs/``, ``segfpn/configs`` in a wheel), by name."""

from __future__ import annotations

from pathlib import Path

from segfpn.errors import ConfigError

CONFIG_OPTIONS = ("--config", "-c")


def configs_root() -> Path:
    """``segfpn/configs`` of an installed wheel, else the ``configs/`` folder of the source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def packaged_config_names() -> list[str]:
    """Names accepted by ``--config NAME``: ``demo``, ``sweeps/fpn_ablation``, ``trainer/ddp`` ..."""
    root = configs_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def resolve_config(value: str, option: str = "--config") -> str:
    """``value`` when it names an existing file; else the packaged config it names (``demo``, ``demo.yaml``, or
    ``configs/demo.yaml`` and ``experiments/attention.yaml`` outside the repository). A name without a suffix
    that matches nothing is an error naming ``option``."""
    path = Path(value)
    if path.exists():
        return value
    relative = Path(*path.parts[1:]) if path.parts[:1] == ("configs",) else path
    for candidate in (relative, relative.with_name(relative.name + ".yaml")):
        packaged = configs_root() / candidate
        if not candidate.is_absolute() and packaged.is_file():
            return str(packaged)
    if not path.suffix:
        raise ConfigError(
            f"{option} {value!r}: expected a config file or the name of a packaged config, found neither",
            "packaged configs: " + ", ".join(packaged_config_names()),
        )
    return value  # a missing file: the parser names it


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config``/``-c`` value passed through :func:`resolve_config`."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in CONFIG_OPTIONS and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + resolve_config(arg.split("=", 1)[1])
    return out
