"""What offline wandb adds to a run: start, logging, finish, measured on their own (no training).

    PYTHONPATH=. python scripts/bench_wandb_offline.py [--steps 45] [--save-dir /tmp/bench_wandb]

``--steps`` is the number of logging steps (the demo: 900 steps / log_every_n_steps 20 = 45), each with the
metrics the demo logs per logging step. Prints seconds for each phase.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from amlit import keys
from amlit.loggers import WandbLogger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=45)
    parser.add_argument("--save-dir", default=None)
    args = parser.parse_args()
    save_dir = args.save_dir or tempfile.mkdtemp(prefix="bench_wandb_")
    metric_names = [
        keys.TRAIN_LOSS,
        keys.TRAIN_ACC,
        keys.TRAIN_TARGET_ANGLE,
        keys.TRAIN_MARGIN_VIOLATION,
        keys.TRAIN_EMBEDDING_NORM,
        keys.TRAIN_WEIGHT_NORM_MEAN,
        keys.TRAIN_WEIGHT_NORM_STD,
        "lr-SGD",
    ]
    start = time.perf_counter()
    logger = WandbLogger(project="amlit", save_dir=save_dir, mode="offline")
    logger.log_hyperparams({"model": {"head": {"init_args": {"margin": 0.35, "scale": 30.0}}}})
    started = time.perf_counter()
    for step in range(args.steps):
        logger.log_metrics({name: 1.0 / (step + 1) for name in metric_names}, step=step)
    logged = time.perf_counter()
    logger.experiment.finish()
    finished = time.perf_counter()
    print(f"save_dir={save_dir}")
    print(f"start (wandb.init offline + config): {started - start:6.2f} s")
    print(f"log {args.steps} steps x {len(metric_names)} metrics:  {logged - started:6.2f} s")
    print(f"finish:                              {finished - logged:6.2f} s")
    print(f"total added to a run:                {finished - start:6.2f} s")


if __name__ == "__main__":
    main()
