"""Lightning callbacks of amlit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import yaml
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from amlit.eval.curves import Curve
from amlit.eval.plots import plot_curves


class EmbeddingWriter(BasePredictionWriter):
    """Writes ``amlit predict`` results as one ``.npz``: ``names`` (image paths relative to the data root, str)
    and ``features`` (N, D) float32, flip-summed and L2-normalized, in the order of ``names``.

    This is the embeddings-file interface of the design: protocols can be recomputed outside amlit from it.
    With several predict dataloaders, the file of dataloader ``i > 0`` gets the suffix ``.<i>``.
    Under DDP the ranks' results are gathered and rank 0 writes the file (padding duplicates removed by index).
    """

    def __init__(self, output: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.output = Path(output)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        # Lightning gives a list per dataloader only when there are several.
        loaders = trainer.predict_dataloaders
        loaders = list(loaders) if isinstance(loaders, list | tuple) else [loaders]
        per_loader = predictions if len(loaders) > 1 else [predictions]
        for loader_index, (loader, outputs) in enumerate(zip(loaders, per_loader, strict=True)):
            features = torch.cat([f for f, _ in outputs]) if outputs else torch.empty(0, 0)
            indices = torch.cat([i for _, i in outputs]) if outputs else torch.empty(0, dtype=torch.long)
            if dist.is_available() and dist.is_initialized():
                gathered: list = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, (features, indices))
                features = torch.cat([f for f, _ in gathered if f.numel()])
                indices = torch.cat([i for _, i in gathered if i.numel()])
            if trainer.global_rank != 0:
                continue
            names = list(loader.dataset.files)
            out = np.full((len(names), features.shape[1]), np.nan, dtype=np.float32)
            out[indices.numpy()] = features.numpy()
            path = self.output if loader_index == 0 else self.output.with_suffix(f".{loader_index}.npz")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, names=np.array(names, dtype=str), features=out)
            rank_zero_info(f"wrote {len(names)} embeddings of dimension {out.shape[1]} to {path}")


class ResultsWriter(Callback):
    """After ``test``: ``results.json`` (flat ``{metric_key: number}`` plus ``config``, ``manifest`` and
    ``checkpoint``), ``results.csv`` (one row: the metric keys as columns) and PNG plots of the curves (ROC, CMC).

    Files go to ``output_dir``, or to the logger's directory (``trainer.log_dir``) when unset; plots are also sent
    to loggers that take images (wandb). Only rank 0 writes. This is the results-file interface of the design.
    """

    def __init__(self, output_dir: str | Path | None = None, plots: bool = True) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.plots = plots

    def on_test_end(self, trainer, pl_module) -> None:
        if trainer.global_rank != 0:
            return
        output_dir = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        results = pl_module.eval_results
        metrics = {key: float(value) for key, value in results.items() if not isinstance(value, Curve)}
        curves = {key: value for key, value in results.items() if isinstance(value, Curve)}
        datamodule = trainer.datamodule
        document = {
            **metrics,
            "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None,
            "config": _saved_config(trainer),
            "manifest": datamodule.manifest() if hasattr(datamodule, "manifest") else None,
        }
        (output_dir / "results.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
        pd.DataFrame([metrics]).to_csv(output_dir / "results.csv", index=False)
        written = plot_curves(curves, output_dir / "plots") if self.plots and curves else []
        for logger in trainer.loggers:
            if hasattr(logger, "log_image") and written:
                logger.log_image(key="test/plots", images=[str(p) for p in written], caption=[p.stem for p in written])
        width = max(map(len, metrics), default=0)
        table = "\n".join(f"  {key:<{width}}  {value:.6g}" for key, value in metrics.items())
        rank_zero_info(
            f"test results:\n{table}\nwrote results.json, results.csv and {len(written)} plot(s) to {output_dir}"
        )


def _saved_config(trainer) -> dict | None:
    """The resolved run config, as LightningCLI's ``SaveConfigCallback`` holds it (None outside the CLI)."""
    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback):
            return yaml.safe_load(callback.parser.dump(callback.config, skip_none=False, skip_check=True))
    return None
