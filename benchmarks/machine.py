"""The machine's ceiling: fp32 (and bf16) matmul GFLOP/s."""

from __future__ import annotations

import torch

from benchmarks.common import time_call


def matmul_gflops(n: int = 2048, dtype: torch.dtype = torch.float32, device: str = "cpu", repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_call(lambda: a @ b, repeats, device=device)
    return 2 * n**3 / seconds / 1e9


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    rows = [{"what": "matmul fp32", "n": 2048, "GFLOP/s": matmul_gflops(2048, torch.float32, device)}]
    n = 256 if device == "cpu" else 2048  # bf16 is emulated on CPUs without bf16 units: keep it small
    rows.append({"what": "matmul bf16", "n": n, "GFLOP/s": matmul_gflops(n, torch.bfloat16, device, repeats=3)})
    return rows
