"""The text files a user hands segfpn (configs, experiment and classes files, metric logs): UTF-8 or a named
error, and YAML read with a bound on alias expansion.

A few hundred bytes of nested aliases (``b: [*a, *a, ...]``, the "billion laughs") expand to billions of values.
The node graph is composed first (aliases stay shared there) and its expanded size counted before any Python
object is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from segfpn.errors import ConfigError, UserError

MAX_EXPANDED_NODES = 1_000_000  # far above any real config (the largest packaged one has < 1000 nodes)


def expanded_size(node: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """The number of nodes ``node`` stands for once every alias is expanded, counted up to ``limit`` (a shared
    node counts each time it is used; a recursive alias counts as unbounded)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            return limit + 1
        in_progress.add(key)
        children: list[yaml.Node] = []
        if isinstance(n, yaml.SequenceNode):
            children = list(n.value)
        elif isinstance(n, yaml.MappingNode):
            children = [item for pair in n.value for item in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                break
        in_progress.discard(key)
        sizes[key] = total
        return total

    return size(node)


def check_expansion(text: str, source: str) -> None:
    """Raise :class:`ConfigError` naming ``source`` when the YAML ``text`` expands beyond the bound."""
    _check_node(yaml.compose(text, Loader=yaml.SafeLoader), source)


def _check_node(node: yaml.Node | None, source: str) -> None:
    if node is not None and expanded_size(node) > MAX_EXPANDED_NODES:
        raise ConfigError(
            f"{source}: its YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?); "
            "expected a config of plain values"
        )


def read_text(path: Path, what: str, error: type[UserError] = ConfigError) -> str:
    """A text file's content: UTF-8, a byte-order mark dropped (spreadsheets and some editors write one); other
    encodings are an ``error`` naming ``what`` (e.g. ``"classes file"``) and the path."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(
            f"{what} {str(path)!r} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8"
        ) from err


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, refused as :func:`check_expansion` says before any object is built (one parse: the
    checked node graph is the one constructed); ``source`` names the file in errors."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        _check_node(node, source)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml_file(path: Path, what: str) -> Any:
    """:func:`load_yaml` of a file's :func:`read_text`; ``what`` (e.g. ``"--config"``) names it in errors."""
    return load_yaml(read_text(path, what), f"{what} {str(path)!r}")


def bound_jsonargparse() -> None:
    """Put the bound in front of jsonargparse's YAML loader, which reads ``--config`` files and option values."""
    import jsonargparse

    load = jsonargparse.get_loader("yaml")
    if getattr(load, "bounded", False):
        return

    def bounded_load(text: str) -> Any:
        if isinstance(text, str) and "*" in text:  # without an alias there is nothing to expand
            check_expansion(text, "a --config file or option value")
        return load(text)

    bounded_load.bounded = True  # type: ignore[attr-defined]
    jsonargparse.set_loader("yaml", bounded_load, exceptions=(yaml.YAMLError,))
