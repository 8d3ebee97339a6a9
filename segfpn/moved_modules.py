"""Module paths from before the ``training/`` and ``inference/`` layout keep importing, with a FutureWarning naming
the new path: ``import segfpn.module`` gives :mod:`segfpn.training.module` itself (the same module object), so
saved configs, pickles and notebooks that name an old path still load."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# old module path -> where it lives now
MOVED_MODULES = {
    "segfpn.module": "segfpn.training.module",
    "segfpn.losses": "segfpn.training.losses",
    "segfpn.optim": "segfpn.training.optim",
    "segfpn.runs": "segfpn.training.runs",
    "segfpn.checkpoint_io": "segfpn.training.checkpoint_io",
    "segfpn.wandb_setup": "segfpn.training.wandb_setup",
    "segfpn.console": "segfpn.training.console",
    "segfpn.lightning_cli": "segfpn.training.cli",
    "segfpn.callbacks": "segfpn.training.callbacks",
    "segfpn.overlays": "segfpn.training.callbacks.overlays",
    "segfpn.evaluation_files": "segfpn.training.callbacks.evaluation_files",
    "segfpn.preemption": "segfpn.training.callbacks.preemption",
    "segfpn.analysis.experiment": "segfpn.training.experiment",
    "segfpn.analysis.convert": "segfpn.training.converted_checkpoint",
    "segfpn.analysis.errors": "segfpn.analysis.class_errors",
    "segfpn.analysis.tables": "segfpn.tables",
    "segfpn.predictor": "segfpn.inference.predictor",
    "segfpn.export": "segfpn.inference.export",
    "segfpn.checkpoint_file": "segfpn.inference.checkpoint",
    "segfpn.models.convert": "segfpn.models.from_mmseg",
    "segfpn.output_paths": "segfpn.commands.output_paths",
}

# old module path -> what replaced it, for modules folded into others
REMOVED_MODULES = {
    "segfpn.analysis.checkpoint": "load_trained was folded: segfpn.inference.predictor.load_trained_network loads the "
    "network and segfpn.datasets.datamodule.evaluation_datamodule builds its data",
}


class _MovedModuleLoader(importlib.abc.Loader):
    """Imports the new module and hands it out under the old name (its own ``__spec__`` kept)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}: import it from there", FutureWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the old name's spec; the module keeps its own


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in REMOVED_MODULES:
            raise ModuleNotFoundError(f"{fullname} is gone: {REMOVED_MODULES[fullname]}", name=fullname)
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader())


def install() -> None:
    """Let the old module paths import (once per process)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
