"""Lightning callbacks of amlit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info


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
        per_loader = predictions if len(trainer.predict_dataloaders) > 1 else [predictions]
        for loader_index, (loader, outputs) in enumerate(zip(trainer.predict_dataloaders, per_loader, strict=True)):
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
