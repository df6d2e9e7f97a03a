"""BinaryConnect det for N epochs: lr 3e-3 cosine, batch 200, the reference W_LR_scale, seeds 0 and 1 in
two worker processes (one torch thread each).  Reads data/prepared of a `dvc repro`; prints each run's
det test error and CPU seconds and writes docs/results/binary_schedule_<N>.json.

    python -m benchmarks.binary_schedule 20
"""
import json
import sys
import time

from compress.data import load_split
from compress.quant.binary import train_runs
from compress.quant.config import BinaryConfig


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    train, val, test = (load_split("data/prepared", s) for s in ("train", "val", "test"))
    cfg = BinaryConfig(epochs=epochs, batch_size=200, lr=0.003, modes=["det"], seeds=[0, 1])
    t = time.time()
    runs = train_runs(train, val, test, [1, 28, 28], 10, [("det", 0), ("det", 1)], hidden=cfg.hidden, cfg=cfg, lr_scale="glorot",
                      workers=2, on_result=lambda r: print(r["method"], r["seed"], "test_error", r["test_error"], "cpu", r["cpu_seconds"], flush=True))
    keys = ("method", "seed", "test_error", "test_error_binary", "test_error_real", "best_iteration", "cpu_seconds", "seconds")
    out = {"epochs": cfg.epochs, "lr": cfg.lr, "schedule": cfg.schedule, "batch_size": cfg.batch_size,
           "runs": [{k: r[k] for k in keys} for r in runs], "wall": time.time() - t}
    with open(f"docs/results/binary_schedule_{epochs}.json", "w") as f:
        json.dump(out, f, indent=1)
    print("wall", round(out["wall"], 1))


if __name__ == "__main__":
    main()
