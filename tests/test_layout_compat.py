"""What was saved or typed before the training/ and inference/ layout still works: old module paths import (with
a FutureWarning naming the new one), and a checkpoint and config written by the old layout load, predict the same
logits and validate (fixtures in tests/fixtures/before_layout, written by commit f35d369)."""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from segfpn.moved_modules import MOVED_MODULES, REMOVED_MODULES

FIXTURES = Path(__file__).parent / "fixtures" / "before_layout"
CHECKPOINT = FIXTURES / "test_convnext_step2.ckpt"
CONFIG = FIXTURES / "fit_config.yaml"


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_module_path_is_the_new_module_with_a_warning_naming_it(old: str) -> None:
    new = importlib.import_module(MOVED_MODULES[old])
    sys.modules.pop(old, None)
    with pytest.warns(FutureWarning, match=f"{old} moved to {MOVED_MODULES[old]}"):
        module = importlib.import_module(old)
    assert module is new and module.__spec__.name == MOVED_MODULES[old]


@pytest.mark.parametrize("old", sorted(REMOVED_MODULES))
def test_a_folded_module_names_what_replaced_it(old: str) -> None:
    with pytest.raises(ModuleNotFoundError, match=f"{old} is gone: .*segfpn\\."):
        importlib.import_module(old)


@pytest.mark.parametrize("old", sorted(json.loads((FIXTURES / "public_names.json").read_text())))
def test_every_public_name_of_an_old_module_is_still_there(old: str) -> None:
    """public_names.json: each old module's top-level public names at f35d369 (read from its source)."""
    names = json.loads((FIXTURES / "public_names.json").read_text())[old]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = importlib.import_module(old)
    assert [name for name in names if not hasattr(module, name)] == []


def test_the_names_users_type_import_from_their_documented_paths() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from segfpn.module import SegmentationModule as OldModule
        from segfpn.predictor import Segmenter as OldSegmenter

        from segfpn.datasets import ADE20KDataModule, ADE20KDataset  # noqa: F401
        from segfpn.inference import InferenceConfig, predict_logits  # noqa: F401  (segfpn.inference was a module)
        from segfpn.models import SegmentationModel  # noqa: F401
        from segfpn.utils import calculate_metrics, visualize_batch  # noqa: F401
    from segfpn.inference.predictor import Segmenter
    from segfpn.training.module import SegmentationModule

    assert OldModule is SegmentationModule and OldSegmenter is Segmenter


def test_a_checkpoint_from_before_predicts_the_logits_it_predicted_then() -> None:
    from segfpn.inference.predictor import Segmenter

    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    logits = Segmenter.from_checkpoint(CHECKPOINT).logits(image).numpy()
    expected = np.load(FIXTURES / "logits_rng0_64x96.npy").astype(np.float32)
    assert logits.shape == expected.shape == (150, 64, 96)
    np.testing.assert_allclose(logits, expected, atol=2e-3, rtol=2e-3)  # saved as float16


def test_a_checkpoint_from_before_loads_through_the_old_module_path() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from segfpn.module import SegmentationModule
    module = SegmentationModule.load_from_checkpoint(CHECKPOINT, weights_only=True)
    assert module.hparams.backbone_name == "test_convnext" and module.model.num_classes == 150


def test_a_config_and_checkpoint_from_before_validate(tmp_path: Path) -> None:
    from segfpn.datasets.synthetic import generate_dataset
    from segfpn.training.cli import run_cli

    data = generate_dataset(
        tmp_path / "ADEChallengeData2016", num_train=2, num_val=2, size_range=(64, 96), progress=False
    )
    root = tmp_path / "runs"
    cli = run_cli(
        [
            "validate",
            f"--config={CONFIG}",
            f"--ckpt_path={CHECKPOINT}",
            f"--data.data_root={data}",
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            f"--checkpoint.dirpath={root / 'checkpoints'}",
            f"--predictions.output_dir={root / 'predictions'}",
            "--trainer.limit_val_batches=2",
        ]
    )
    assert cli.model.hparams.backbone_name == "test_convnext"
    results = sorted(root.rglob("validate_val_step*.json"))
    assert len(results) == 1, results
    scores = json.loads(results[0].read_text())
    assert 0.0 <= scores["aAcc"] <= 1.0
