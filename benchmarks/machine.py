"""The machine's ceiling: fp32 GFLOP/s of a large GEMM through both of torch's CPU back-ends (BLAS matmul and
oneDNN convolution; on some CPUs one is much faster than the other), and bf16 matmul."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.common import time_call


def matmul_gflops(n: int = 2048, dtype: torch.dtype = torch.float32, device: str = "cpu", repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_call(lambda: a @ b, repeats, device=device)
    return 2 * n**3 / seconds / 1e9


def conv_gemm_gflops(n: int = 2048, device: str = "cpu", repeats: int = 5) -> float:
    """The same GEMM as a 1x1 convolution (n x n weights over n pixels), which runs through oneDNN/cuDNN."""
    x = torch.randn(1, n, n // 64, 64, device=device)
    w = torch.randn(n, n, 1, 1, device=device)
    seconds = time_call(lambda: F.conv2d(x, w), repeats, device=device)
    return 2 * n**3 / seconds / 1e9


def fp32_ceiling(device: str = "cpu") -> float:
    """The best fp32 GFLOP/s that either back-end reaches on a large GEMM."""
    return max(matmul_gflops(2048, torch.float32, device), conv_gemm_gflops(2048, device))


def cpu_bf16_native() -> bool:
    """True when the CPU has bf16 units (AVX512-BF16 or AMX, as oneDNN checks); otherwise bf16 is emulated."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    on_cpu = device == "cpu"
    native = not on_cpu or cpu_bf16_native()
    capability = f"CPU capability {torch.backends.cpu.get_cpu_capability()}" if on_cpu else ""
    rows = [
        {"what": "matmul fp32 (BLAS)", "n": 2048, "GFLOP/s": matmul_gflops(2048, torch.float32, device), "note": ""},
        {"what": "1x1 conv fp32 (oneDNN GEMM)", "n": 2048, "GFLOP/s": conv_gemm_gflops(2048, device), "note": ""},
    ]
    best = max(rows, key=lambda r: r["GFLOP/s"])
    best["note"] = f"ceiling used by the model table; {capability}".rstrip("; ")
    n = 2048 if native else 256  # emulated bf16 is tens of times slower than fp32: keep it small
    gflops = matmul_gflops(n, torch.bfloat16, device, repeats=3)
    rows.append({"what": "matmul bf16", "n": n, "GFLOP/s": gflops, "note": "native" if native else "emulated"})
    return rows
