"""Monarch vs dense matmul on the CPU: measured speed ratios beside the FLOP ratio 2/sqrt(n).

    python benchmarks/bench_monarch.py [--sizes 256 1024 4096] [--batch 256] [--repeats 20] [--threads N] [--json out.json]

For each n: y = x W^T (nn.Linear, no bias) against MonarchLinear with m = sqrt(n) blocks of
m x m (2 n sqrt(n) weights, rank 1), x of shape (batch, n), float32.  Forward runs under
inference mode; forward+backward computes the gradients of both weights and input.  Each cell is
the median wall-clock time of ``repeats`` calls after warm-up.  Timings are noisy whenever other
processes share the CPU: the machine description and the load average are printed with the table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import torch
import torch.nn as nn

from compress.structured.monarch import MonarchLinear, sqrt_shape


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench(layer: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> tuple[float, float]:
    def fwd():
        with torch.inference_mode():
            layer(x)

    xg = x.clone().requires_grad_()

    def fwd_bwd():
        layer.zero_grad(set_to_none=True)
        xg.grad = None
        layer(xg).sum().backward()

    return median_ms(fwd, warmup, repeats), median_ms(fwd_bwd, warmup, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    for n in args.sizes:
        if math.isqrt(n) ** 2 != n:
            raise SystemExit(f"error: --sizes {n} is not a perfect square (the benchmark uses m = sqrt(n) blocks)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for n in args.sizes:
        shape = sqrt_shape(n, n)
        dense, monarch = nn.Linear(n, n, bias=False), MonarchLinear(shape, bias=False)
        x = torch.randn(args.batch, n)
        d_f, d_fb = bench(dense, x, args.warmup, args.repeats)
        m_f, m_fb = bench(monarch, x, args.warmup, args.repeats)
        rows.append({"n": n, "m": shape.nblocks_in, "flop_ratio": shape.num_weights / (n * n),
                     "dense_fwd_ms": d_f, "monarch_fwd_ms": m_f, "speedup_fwd": d_f / m_f,
                     "dense_fwdbwd_ms": d_fb, "monarch_fwdbwd_ms": m_fb, "speedup_fwdbwd": d_fb / m_fb})
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "batch": args.batch, "repeats": args.repeats, "loadavg_1m": round(load[0], 2)}
    print(f"# {machine['cpu']}, {machine['cores']} cores, {machine['threads']} torch threads, torch {machine['torch']}, "
          f"batch {args.batch}, float32, median of {args.repeats}; load average {load[0]:.2f} (other processes make timings noisy)")
    print("| n | m | FLOP ratio 2/sqrt(n) | dense fwd ms | Monarch fwd ms | speed-up fwd | dense fwd+bwd ms | Monarch fwd+bwd ms | speed-up fwd+bwd |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']} | {r['m']} | {r['flop_ratio']:.4f} (ideal {1 / r['flop_ratio']:.0f}x) | {r['dense_fwd_ms']:.3f} | "
              f"{r['monarch_fwd_ms']:.3f} | {r['speedup_fwd']:.2f}x | {r['dense_fwdbwd_ms']:.3f} | {r['monarch_fwdbwd_ms']:.3f} | "
              f"{r['speedup_fwdbwd']:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
