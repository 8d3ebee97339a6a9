"""Declared dependency ranges are tested ranges: each lower bound in pyproject.toml is the release the suite runs on
(requirements/constraints.txt, what `make install` installs), up to the precision the bound is written with."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def locked() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version.strip())
    return pins


def lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(bounds) if bounds else None


def test_every_lower_bound_is_the_locked_release() -> None:
    pins = locked()
    wrong = []
    for requirement in declared():
        bound = lower_bound(requirement)
        if bound is None:  # the parity extra's pure-Python helpers: whatever the lock has
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement.name} is declared but not in requirements/constraints.txt"
        precision = len(bound.release)
        if pin.release[:precision] != bound.release or pin not in requirement.specifier:
            wrong.append(f"{requirement}: the suite runs on {pin}")
    assert wrong == [], (
        "raise the lower bound to the tested release (or run the suite on the declared one): " + "; ".join(wrong)
    )


def test_the_check_compares_to_the_written_precision() -> None:
    requirement = Requirement("lightning>=2.6.6,<2.7")
    assert lower_bound(requirement) == Version("2.6.6")
    assert Version("2.6.6") in requirement.specifier and Version("2.7.0") not in requirement.specifier
    assert Version("2.14.1").release[:2] == Version("2.14").release
