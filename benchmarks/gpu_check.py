"""The benchmark half of ``benchmarks/gpu_check.sh``: ``segfpn benchmark`` for the three published ADE20K configs
(bf16-mixed, channels_last, compiled or not) on generated ADE20K-layout data, and segfpn's Semantic FPN against
smp's FPN on the same encoders, side by side in this run. One Markdown and one JSON file in ``--out``.

    python -m benchmarks.gpu_check --device cuda --out DIR     # on a GPU machine (through gpu_check.sh)
    python -m benchmarks.gpu_check --device cpu --out DIR      # the dry run: tiny sizes, the same code path
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.model_speed import Config, measure_in_subprocess
from segfpn.tables import markdown_table
from segfpn.training.benchmark import PHASES, run_benchmark

CONFIGS = ("convnext_tiny_fpn_ade20k", "pvt_v2_b0_fpn_ade20k", "swin_tiny_fpn_ade20k")
COMPILED = ("convnext_tiny_fpn_ade20k",)  # compiling every config would not fit the device check's minutes
SMP_BACKBONES = {
    "convnext_tiny_fpn_ade20k": "convnext_tiny",
    "pvt_v2_b0_fpn_ade20k": "pvt_v2_b0",
    "swin_tiny_fpn_ade20k": "swin_tiny_patch4_window7_224",
}
# mmsegmentation's published Semantic FPN rows (configs/sem_fpn/README.md, ADE20K 512x512, V100), for context
MMSEG_PUBLISHED = (
    {"model": "mmseg Semantic FPN R-50 (V100)", "train memory GB": 4.9, "inference fps": 55.77},
    {"model": "mmseg Semantic FPN R-101 (V100)", "train memory GB": 5.9, "inference fps": 40.58},
)


@dataclass(frozen=True)
class Sizes:
    batch: int
    crop: int
    scale: tuple[int, int]
    steps: int
    warmup: int
    workers: int
    precision: str
    smp_variant: str
    embedded: tuple[int, int]  # generated training and validation images


SIZES = {
    "cuda": Sizes(16, 512, (2048, 512), 20, 5, 16, "bf16-mixed", "bf16_channels_last", (96, 32)),
    # the dry run: float32 (bf16 is emulated on CPUs without bf16 units), a few tiny steps
    "cpu": Sizes(2, 64, (128, 64), 2, 1, 0, "32-true", "fp32", (8, 4)),
}


def benchmark_args(config: str, sizes: Sizes, work: Path, compiled: bool, device: str) -> list[str]:
    train, val = sizes.embedded
    return [
        "--config",
        config,
        "--model.pretrained=false",  # no hub on the device machine: random weights time the same
        "--model.channels_last=true",
        f"--model.compile={str(compiled).lower()}",
        f"--trainer.precision={sizes.precision}",
        f"--trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        "--trainer.devices=1",
        f"--trainer.default_root_dir={work / 'runs'}",
        "--trainer.enable_progress_bar=false",
        "--data.embedded=true",
        f"--data.data_root={work / 'data'}",
        f"--data.embedded_num_train={train}",
        f"--data.embedded_num_val={val}",
        f"--data.batch_size={sizes.batch}",
        f"--data.crop_size={sizes.crop}",
        f"--data.scale=[{sizes.scale[0]}, {sizes.scale[1]}]",
        f"--data.num_workers={sizes.workers}",
        f"--data.pin_memory={str(device == 'cuda').lower()}",
        f"--model.inference.test_scale=[{sizes.scale[0]}, {sizes.scale[1]}]",
    ]


def _ratio(ours: float, peer: float) -> str:
    """``ours / peer``, or n/a where the peer's figure is too small to divide by (a CPU RSS growth of ~0 MB)."""
    return f"{ours / peer:.3f}" if peer > 1.0 else "n/a"


def run(device: str, out: Path) -> tuple[Path, Path]:
    sizes = SIZES[device]
    rows, reports = [], []
    with tempfile.TemporaryDirectory(prefix="segfpn-gpu-check-") as tmp:
        for config in CONFIGS:
            for compiled in (False, True) if device == "cuda" and config in COMPILED else (False,):
                print(f"gpu_check: segfpn benchmark {config} (compiled: {compiled}) on {device}", flush=True)
                report = run_benchmark(
                    benchmark_args(config, sizes, Path(tmp), compiled, device), set(PHASES), sizes.steps, sizes.warmup
                )
                reports.append(report)
                gc.collect()  # the Trainer and module of this config hold each other: free them before the next
                if device == "cuda":
                    torch.cuda.empty_cache()
                r = report["results"]
                rows.append(
                    {
                        "config": config,
                        "compiled": compiled,
                        "fit img/s": f"{r['fit']['rate']:.1f}",
                        "model img/s": f"{r['model']['rate']:.1f}",
                        "data img/s": f"{r['data']['rate']:.1f}",
                        "inference fps": f"{r['inference']['rate']:.2f}",
                        "train peak memory MB": f"{r['model']['peak_memory_mb']:.0f} ({r['model']['memory']})",
                        "verdict": report["verdict"],
                    }
                )
        smp_rows = []
        for config in CONFIGS:
            backbone = SMP_BACKBONES[config]
            times = {}
            for framework in ("segfpn", "smp"):
                print(f"gpu_check: {framework} FPN on {backbone} ({sizes.smp_variant}) on {device}", flush=True)
                cfg = Config(framework, backbone, sizes.crop, sizes.batch, sizes.smp_variant, 3, device)
                times[framework] = measure_in_subprocess(cfg)
            smp_rows.append(
                {
                    "encoder": backbone,
                    "variant": sizes.smp_variant,
                    "segfpn train step s": f"{times['segfpn']['train_s']:.4f}",
                    "smp train step s": f"{times['smp']['train_s']:.4f}",
                    "segfpn/smp train time": f"{times['segfpn']['train_s'] / times['smp']['train_s']:.3f}",
                    "segfpn/smp peak memory": _ratio(times["segfpn"]["peak_mem_MB"], times["smp"]["peak_mem_MB"]),
                }
            )
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    header = (
        f"# GPU check: {name}\n\n{datetime.date.today().isoformat()}, torch {torch.__version__}, "
        f"Python {platform.python_version()}; batch {sizes.batch}, crop {sizes.crop}, {sizes.precision}, "
        f"channels_last, {sizes.workers} loader workers, {sizes.steps} timed steps after {sizes.warmup}; "
        "generated ADE20K-layout data, random weights.\n\n"
    )
    body = (
        "## segfpn benchmark per published config\n\n"
        + markdown_table(rows, list(rows[0]))
        + "\n\n## segfpn / smp FPN, same encoder, same run\n\n"
        + markdown_table(smp_rows, list(smp_rows[0]))
        + "\n\n## mmsegmentation's published rows (another GPU: context, not a comparison)\n\n"
        + markdown_table(list(MMSEG_PUBLISHED), list(MMSEG_PUBLISHED[0]))
        + "\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"gpu_check-{device}.md", out / f"gpu_check-{device}.json"
    md.write_text(header + body)
    js.write_text(json.dumps({"device": name, "benchmarks": reports, "smp": smp_rows}, indent=2) + "\n")
    return md, js


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--device", choices=tuple(SIZES), default="cuda", help="cuda, or cpu for the dry run")
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check-<device>.md and .json")
    args = parser.parse_args(argv)
    md, js = run(args.device, args.out)
    print(f"gpu_check: wrote {md} and {js}")


if __name__ == "__main__":
    main()
