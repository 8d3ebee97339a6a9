"""The import graph of segfpn: no loop at any level (function-level imports included), each layer imports only
the layers below it, Lightning only in training/ and the DataModule, and segfpn.constants imports nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segfpn"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt], every_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: top level and inside module-level if/try blocks (not
    ``if TYPE_CHECKING:``); with ``every_level``, also those inside functions and classes (run on first use)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                found += _imports(node.body, every_level) + _imports(node.orelse, every_level)
        elif isinstance(node, ast.Try):
            found += _imports(node.body + node.orelse + node.finalbody, every_level)
            for handler in node.handlers:
                found += _imports(handler.body, every_level)
        elif every_level:
            found += _imports([child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)], True)
    return found


def source_files() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_graph(every_level: bool = False) -> dict[str, set[str]]:
    """segfpn module -> the segfpn modules it imports at module level (with ``every_level``: anywhere, function
    bodies included); ``from pkg import sub`` counts as an import of ``pkg.sub`` when ``sub`` is a module."""
    files = source_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path)).body, every_level):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in files}
                continue
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("segfpn"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if sub in files else target)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def third_party_imports(name: str) -> set[str]:
    """The top-level names of the packages a segfpn module imports anywhere in its body."""
    path = source_files()[name]
    found = set()
    for node in _imports(ast.parse(path.read_text(), str(path)).body, every_level=True):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - {"segfpn"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_known_imports() -> None:
    graph = import_graph()
    assert len(graph) > 40
    assert "segfpn.datasets.info" in graph["segfpn.datasets.base"]
    assert "segfpn.constants" in graph["segfpn.metrics"]
    assert "segfpn.constants" in graph["segfpn.datasets.info"]


def test_find_cycle_reports_a_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_segfpn_has_no_import_loop() -> None:
    assert find_cycle(import_graph()) is None


def test_segfpn_has_no_import_loop_through_function_level_imports() -> None:
    """A lazy import inside a function still ties two modules together: no loop at any level."""
    assert find_cycle(import_graph(every_level=True)) is None


def test_the_every_level_graph_sees_imports_inside_functions() -> None:
    graph = import_graph(every_level=True)
    assert "segfpn.training.cli" in graph["segfpn.cli"]  # imported inside main()
    assert "segfpn.training.cli" not in import_graph()["segfpn.cli"]


# Layers, lowest first: a module may import its own layer and those below it, never one above.
LAYERS = (
    (
        "base",
        (
            "segfpn",  # the package itself: its version and the moved-module finder
            "segfpn.constants",
            "segfpn.errors",
            "segfpn.text_files",
            "segfpn.atomic_files",
            "segfpn.metrics",
            "segfpn.tables",
            "segfpn.packaged_configs",
            "segfpn.moved_modules",
            "segfpn.models",
            "segfpn.datasets",
            "segfpn.utils",
        ),
    ),
    ("inference", ("segfpn.inference",)),
    ("training", ("segfpn.training",)),
    ("analysis", ("segfpn.analysis",)),
    ("commands", ("segfpn.commands",)),
    ("entry", ("segfpn.cli", "segfpn.__main__")),
)
# The only modules that may import Lightning: the training layer and the datasets' LightningDataModule.
LIGHTNING_ALLOWED = ("segfpn.training", "segfpn.datasets.datamodule")


def layer_of(module: str) -> int:
    """The layer of a module: the one naming it or its package (``segfpn`` itself names only the package)."""
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (p != "segfpn" and module.startswith(p + ".")) for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_imports.py: LAYERS")


def test_every_module_imports_only_its_layer_and_those_below() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in import_graph(every_level=True).items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_the_layer_rule_catches_an_upward_import() -> None:
    assert layer_of("segfpn.inference.predictor") < layer_of("segfpn.training.module")
    assert layer_of("segfpn.models.fpn") < layer_of("segfpn.inference.export")
    assert layer_of("segfpn.cli") == len(LAYERS) - 1


def test_only_training_and_the_datamodule_import_lightning() -> None:
    found = sorted(
        name
        for name in source_files()
        if {"lightning", "pytorch_lightning"} & third_party_imports(name)
        and not any(name == p or name.startswith(p + ".") for p in LIGHTNING_ALLOWED)
    )
    assert found == []
    assert "lightning" in third_party_imports("segfpn.training.module")  # the check sees a real import


def test_importing_inference_models_datasets_and_utils_loads_no_lightning() -> None:
    """The predictor and export run where Lightning is not installed: nothing they import pulls it in."""
    code = (
        "import sys\n"
        "import segfpn.inference.predictor, segfpn.inference.export, segfpn.models, segfpn.datasets, segfpn.utils\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_constants_import_nothing() -> None:
    tree = ast.parse((PACKAGE / "constants.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports == [], [ast.unparse(node) for node in imports]
