"""Model speed: forward (eval) and train step (forward + backward + AdamW) time, peak memory and time per
GFLOP, segfpn's Semantic FPN against segmentation_models_pytorch's FPN on the same timm encoder.

Each configuration runs in its own process so that its peak memory (RSS on the CPU) is its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass

import torch
from torch import nn

from benchmarks.common import interleaved
from benchmarks.machine import cpu_bf16_native, fp32_ceiling

SMP_NAMES = {
    "convnext_tiny": "tu-convnext_tiny",
    "pvt_v2_b0": "tu-pvt_v2_b0",
    "swin_tiny_patch4_window7_224": "tu-swin_tiny_patch4_window7_224",
}


@dataclass
class Config:
    framework: str  # "segfpn" | "smp"
    backbone: str
    size: int
    batch: int
    variant: str  # "fp32" | "channels_last" | "bf16" | "bf16_channels_last"
    rounds: int
    device: str = "cpu"


def build(cfg: Config) -> nn.Module:
    torch.manual_seed(0)
    if cfg.framework == "segfpn":
        from segfpn.models import SegmentationModel

        model = SegmentationModel(num_classes=150, backbone_name=cfg.backbone, img_size=cfg.size)
        return _LogitsOnly(model)
    import segmentation_models_pytorch as smp

    extra = {"img_size": cfg.size} if "swin" in cfg.backbone else {}
    return smp.FPN(encoder_name=SMP_NAMES[cfg.backbone], encoder_weights=None, classes=150, **extra)


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["p0"]


def measure(cfg: Config) -> dict:
    """Run in a fresh process: times, GFLOPs and peak memory of one configuration."""
    from torch.utils.flop_counter import FlopCounterMode

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = build(cfg).to(cfg.device)
    memory_format = torch.channels_last if "channels_last" in cfg.variant else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randn(cfg.batch, 3, cfg.size, cfg.size, device=cfg.device).contiguous(memory_format=memory_format)
    target = torch.randint(0, 150, (cfg.batch, cfg.size, cfg.size), device=cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(cfg.device.split(":")[0], dtype=torch.bfloat16, enabled="bf16" in cfg.variant)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    gflops = counter.get_total_flops() / 1e9

    def forward() -> None:
        model.eval()
        with torch.no_grad(), autocast:
            model(x)

    def train_step() -> None:
        model.train()
        with autocast:
            loss = nn.functional.cross_entropy(model(x).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = interleaved({"forward": forward, "train": train_step}, cfg.rounds, cfg.device)
    if cfg.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_start
    return {
        **asdict(cfg),
        "forward_s": times["forward"],
        "train_s": times["train"],
        "gflops": gflops,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "peak_mem_MB": peak,
        "train_s_per_gflop": times["train"] / gflops,
        "forward_gflops_per_s": gflops / times["forward"],
        "train_gflops_per_s": 3 * gflops / times["train"],
    }


def measure_in_subprocess(cfg: Config) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.model_speed", json.dumps(asdict(cfg))],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark {cfg} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(device: str = "cpu", quick: bool = False, backbones: list[str] | None = None) -> list[dict]:
    size, batch, rounds = (256, 2, 3) if quick else (512, 2, 3)
    backbones = backbones or list(SMP_NAMES)
    rows = []
    for backbone in backbones:
        for variant in ("fp32", "channels_last"):
            for framework in ("segfpn", "smp"):
                cfg = Config(framework, backbone, size, batch, variant, rounds, device)
                print(f"  model: {framework} {backbone} {variant} {size}px ...", flush=True)
                rows.append(measure_in_subprocess(cfg))
    # bf16 autocast: the fast path on GPUs and CPUs with bf16 units; elsewhere it is emulated: a tiny check only
    bf16_size = size if device.startswith("cuda") or cpu_bf16_native() else 128
    for framework in ("segfpn", "smp"):
        for variant in ("fp32", "bf16"):
            cfg = Config(framework, "pvt_v2_b0", bf16_size, batch, variant, 2, device)
            print(f"  model: {framework} pvt_v2_b0 {variant} {bf16_size}px ...", flush=True)
            rows.append(measure_in_subprocess(cfg))
    ceiling = fp32_ceiling(device)  # measured in this run, after the models, on the same machine state
    for row in rows:
        row["forward_of_ceiling"] = row["forward_gflops_per_s"] / ceiling
        row["train_of_ceiling"] = row["train_gflops_per_s"] / ceiling
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """segfpn / smp for each (backbone, size, variant): train time, train time per GFLOP, forward, memory."""
    by_key = {(r["framework"], r["backbone"], r["size"], r["variant"]): r for r in rows}
    out = []
    for (framework, backbone, size, variant), ours in by_key.items():
        peer = by_key.get(("smp", backbone, size, variant))
        if framework != "segfpn" or peer is None:
            continue
        out.append(
            {
                "backbone": backbone,
                "size": size,
                "variant": variant,
                "gflops_segfpn/smp": ours["gflops"] / peer["gflops"],
                "train_time_segfpn/smp": ours["train_s"] / peer["train_s"],
                "train_time_per_gflop_segfpn/smp": ours["train_s_per_gflop"] / peer["train_s_per_gflop"],
                "forward_time_segfpn/smp": ours["forward_s"] / peer["forward_s"],
                "peak_mem_segfpn/smp": ours["peak_mem_MB"] / max(peer["peak_mem_MB"], 1e-9),
            }
        )
    return out


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    print(json.dumps(measure(Config(**json.loads(sys.argv[1])))))
