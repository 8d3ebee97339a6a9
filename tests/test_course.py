"""The course tutorial's code cells run against segfpn as written (``seg_model`` spelled ``segfpn``), apart
from the tutorial's own slips; and the tutorial notebook in experiments/ runs headless."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO.parent / "shared" / "course"

# The tutorial's slips, fixed the way a student would (see ../shared/DESIGN.md):
SLIPS = [
    (
        "torch.optim.AdamW(model.parameters(), **config)",
        "torch.optim.AdamW(model.parameters(), lr=config['learning_rate'], weight_decay=config['weight_decay'])",
    ),
    ("nn.CrossEntropyLoss()", "nn.CrossEntropyLoss(ignore_index=255)"),
]


def course_cells() -> list[str]:
    """The code cells of the course text: the lines after each ``In [None]:`` up to the next heading."""
    files = sorted(COURSE.glob("*.txt"))
    if not files:
        pytest.skip(f"course tutorial not found in {COURSE}")
    cells, current = [], None
    for line in files[0].read_text().splitlines():
        if line.strip() == "In [None]:":
            current = []
            cells.append(current)
        elif current is not None and re.match(r"^#{2,3} ", line):
            current = None
        elif current is not None:
            current.append(line)
    return ["\n".join(c).strip() for c in cells]


def test_course_cells_run(tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    (tmp_path / "ADEChallengeData2016").symlink_to(synthetic_root, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    cells = course_cells()
    assert len(cells) == 4 and "from seg_model.models import SegmentationModel" in cells[0]
    namespace: dict = {"nn": torch.nn}  # the tutorial uses nn without importing it
    for i, cell in enumerate(cells):
        code = cell.replace("seg_model", "segfpn")
        for slip, fix in SLIPS:
            code = code.replace(slip, fix)
        if not torch.cuda.is_available():
            code = code.replace(".to('cuda')", ".to('cpu')")
        exec(compile(code, f"course cell {i}", "exec"), namespace)  # noqa: S102
    # Part 3 defines train_epoch without calling it: run it on a few real batches
    from segfpn.datasets import ADE20KDataModule

    data = ADE20KDataModule(data_root=str(synthetic_root), batch_size=2, num_workers=0, crop_size=64, scale=(128, 64))
    data.setup("fit")
    loader = [batch for _, batch in zip(range(2), data.train_dataloader())]
    model = namespace["SegmentationModel"](num_classes=150, backbone_name="pvt_v2_b0")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss, metrics = namespace["train_epoch"](model, loader, namespace["criterion"], optimizer, "cpu")
    assert loss > 0 and len(metrics["iou"]) == 2 and all(0 <= v <= 1 for v in metrics["pixel_acc"])


@pytest.mark.slow
def test_tutorial_notebook_runs(tmp_path: Path, synthetic_root: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO / "experiments" / "tutorial.ipynb", as_version=4)
    os.environ["SEGFPN_TUTORIAL_DATA"] = str(synthetic_root)
    try:
        NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        os.environ.pop("SEGFPN_TUTORIAL_DATA")
    outputs = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "Feature analysis for pvt_v2_b0" in outputs and "dataset-level mIoU" in outputs
    images = sum("image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", []))
    assert images >= 2  # FPN feature maps, predictions
