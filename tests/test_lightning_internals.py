"""Every private Lightning member segfpn uses is listed in segfpn/training/lightning_internals.py, with its reason,
and is still there in the installed Lightning."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from segfpn.training.lightning_internals import LIGHTNING_INTERNALS, missing_internals

PACKAGE = Path(__file__).resolve().parents[1] / "segfpn"
# attribute accesses on Lightning objects that segfpn reaches into (its own private names are on self/cls)
_PRIVATE_ON_LIGHTNING = re.compile(
    r"\b(?:trainer|loop|epoch_loop|fit_loop|super\(\))\.(_[a-z]\w*)|getattr\(trainer, \"(_[a-z]\w*)\""
)


def test_every_listed_private_member_exists_in_the_installed_lightning() -> None:
    assert missing_internals() == []


def test_a_missing_member_is_named_with_its_use() -> None:
    from segfpn.training import lightning_internals

    fake = lightning_internals.Internal("ModelCheckpoint", "_no_such_member", "BestAndLastCheckpoint", "a test")
    original = lightning_internals.LIGHTNING_INTERNALS
    try:
        lightning_internals.LIGHTNING_INTERNALS = (*original, fake)
        (line,) = lightning_internals.missing_internals()
    finally:
        lightning_internals.LIGHTNING_INTERNALS = original
    assert re.fullmatch(
        r"Lightning [\d.]+ has no ModelCheckpoint\._no_such_member, which BestAndLastCheckpoint uses: a test", line
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _subclass_uses() -> set[tuple[str, str]]:
    """``(class, name)`` for each private name a segfpn subclass of a Lightning class uses or overrides that one of
    its Lightning bases defines (as a class attribute or as ``self.<name>`` in its source)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__main__.py":  # runs the CLI when imported
            continue
        module = importlib.import_module(_module_name(path))
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                continue
            bases = [b for b in cls.__mro__[1:] if b.__module__.startswith("lightning")]
            if not bases:
                continue
            own = set(re.findall(r"(?:self\.|def )(_[a-z]\w*)", inspect.getsource(cls)))
            for name in own:
                if any(name in vars(b) or f"self.{name}" in inspect.getsource(b) for b in bases if b is not object):
                    found.add((cls.__name__, name))
    return found


def test_every_private_lightning_member_in_the_code_is_listed() -> None:
    listed = {item.name for item in LIGHTNING_INTERNALS}
    used = {
        (path.relative_to(PACKAGE).as_posix(), name)
        for path in PACKAGE.rglob("*.py")
        for match in _PRIVATE_ON_LIGHTNING.finditer(path.read_text())
        for name in match.groups()
        if name
    } | _subclass_uses()
    assert ("BestAndLastCheckpoint", "_save_last_checkpoint") in used  # the scan sees a subclass's use
    assert ("training/callbacks/preemption.py", "_signal_connector") in used  # and an access through the trainer
    assert {(where, name) for where, name in used if name not in listed} == set()
