"""FaceVerificationModule: an injected backbone and margin head, trained and evaluated as in AM-Softmax.

Training (Wang et al. 2018, Sec. 4.1, = SphereFace's solver): SGD, lr 0.1 divided by 10 at 16k, 24k and 28k
iterations, momentum 0.9, weight decay 5e-4, 30k iterations of global batch 256, mirror augmentation only.
Biases get twice the learning rate and no weight decay (Caffe ``lr_mult: 2, decay_mult: 0``).

Testing: the feature of a face is ``embedding(image) + embedding(mirror)``, L2-normalized, compared by cosine.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from amlit import keys
from amlit.checkpoint_fit import check_held_out_identities, check_weights_fit, head_changes
from amlit.compat import is_logging_step
from amlit.data.sampling import mirror_flags, mirror_seed
from amlit.diagnostics import margin_diagnostics
from amlit.errors import ConfigError
from amlit.eval.curves import Curve
from amlit.eval.evalset import Views
from amlit.eval.metrics import EmbeddingCollector
from amlit.heads import AMSoftmax, MarginHead
from amlit.inference.record import RECORD_KEY, inference_record

# torch.optim.SGD's switches per ``sgd_implementation`` (None: left to PyTorch).
SGD_IMPLEMENTATIONS = {
    None: {},
    "for_loop": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "fused": {"foreach": False, "fused": True},
}
# The settings held in the optimizer and schedule states that a checkpoint restores (see on_train_start).
OPTIMIZER_HPARAMS = ("learning_rate", "momentum", "weight_decay", "lr_milestones", "lr_gamma", "bias_lr_factor")


def check_optimizer_settings(
    learning_rate: float, momentum: float, weight_decay: float, lr_milestones: Sequence[int], lr_gamma: float
) -> None:
    """Refuse (``ConfigError``) SGD and step-schedule settings that would train nothing sensible: torch accepts a
    momentum >= 1 (diverges), a gamma of 0 (learning rate 0 after the first milestone), repeated milestones (each
    copy multiplies: [5, 5] divides by 100 at step 5) and negative milestones (never reached)."""
    if not learning_rate > 0:
        raise ConfigError(f"model.learning_rate must be > 0, got {learning_rate} (paper: 0.1 for a batch of 256)")
    if not 0 <= momentum < 1:
        raise ConfigError(f"model.momentum must satisfy 0 <= momentum < 1, got {momentum} (paper: 0.9)")
    if not weight_decay >= 0:
        raise ConfigError(f"model.weight_decay must be >= 0, got {weight_decay} (paper: 5e-4)")
    if not 0 < lr_gamma <= 1:
        raise ConfigError(f"model.lr_gamma must satisfy 0 < lr_gamma <= 1, got {lr_gamma} (paper: 0.1)")
    milestones = list(lr_milestones)
    if any(step <= 0 for step in milestones) or any(a >= b for a, b in itertools.pairwise(milestones)):
        raise ConfigError(
            f"model.lr_milestones must be optimizer steps > 0 in strictly increasing order, got {milestones} "
            "(paper: [16000, 24000, 28000])"
        )


class FaceVerificationModule(L.LightningModule):
    """Backbone + margin head.

    Args:
        backbone: image batch (B, 3, H, W) -> embedding (B, D); must expose ``embedding_dim``.
        head: builds the margin head from ``(embedding_dim, num_classes)``, e.g. ``amlit.heads.AMSoftmax`` with
            its ``margin`` and ``scale``.
        num_classes: training identities (linked from the data module by the CLI).
        learning_rate, momentum, weight_decay: SGD settings (paper: 0.1, 0.9, 5e-4).
        lr_milestones: optimizer steps at which the learning rate is multiplied by ``lr_gamma``.
        bias_lr_factor: learning-rate multiplier of biases, which get no weight decay (Caffe: 2).
        pixel_mean, pixel_std: input normalization (x - mean) / std on the device (AM-Softmax: 128, 128;
            SphereFace used mean 127.5).
        compile_backbone: ``torch.compile`` the backbone in place (``nn.Module.compile``: checkpoints keep their
            keys). Speed only: the same results up to float rounding (tests/test_speed_switches.py).
        compile_head: ``torch.compile`` the margin head in place too (its normalizations, margin and
            cross-entropy fused; the (B, C) logits are the largest activation of the step).
        compile_mode: ``torch.compile``'s mode for ``compile_backbone``/``compile_head``: ``"reduce-overhead"``
            replays the kernels as CUDA graphs (one launch per step on a GPU; nothing on a CPU), ``"max-autotune"``
            also benchmarks kernel choices (long first steps).
        sgd_implementation: the SGD kernel, ``"for_loop"``, ``"foreach"`` (one kernel per step for all tensors)
            or ``"fused"``; None: PyTorch's default for the device. Same update up to float rounding.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Callable[[int, int], MarginHead],
        num_classes: int,
        learning_rate: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_milestones: Sequence[int] = (16_000, 24_000, 28_000),
        lr_gamma: float = 0.1,
        bias_lr_factor: float = 2.0,
        pixel_mean: float = 128.0,
        pixel_std: float = 128.0,
        compile_backbone: bool = False,
        compile_head: bool = False,
        compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default",
        sgd_implementation: Literal["for_loop", "foreach", "fused"] | None = None,
    ) -> None:
        super().__init__()
        check_optimizer_settings(learning_rate, momentum, weight_decay, lr_milestones, lr_gamma)
        self.save_hyperparameters(ignore=["backbone", "head"])
        self.backbone = backbone
        if compile_backbone:
            self.backbone.compile(mode=compile_mode)
        self.head = head(backbone.embedding_dim, num_classes)
        if compile_head:
            self.head.compile(mode=compile_mode)
        self._collectors: list[EmbeddingCollector] = []
        # Results of the last evaluation, by full key (``test/lfw/acc`` -> 0.99, ``test/lfw/roc`` -> Curve), for
        # the results file and the plots (amlit.callbacks.ResultsWriter).
        self.eval_results: dict[str, float | Curve] = {}

    # ---- tensors ----------------------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 (B, H, W, 3) -> normalized float (B, 3, H, W) in channels_last, on the device; random mirror
        of half the training batch (the paper's only augmentation)."""
        images, targets = batch
        # permute(0, 3, 1, 2) of an NHWC tensor *is* NCHW in channels_last memory layout: no copy needed.
        x = (images.permute(0, 3, 1, 2).float() - self.hparams.pixel_mean) / self.hparams.pixel_std
        # In the weights' dtype: float32 under *-mixed (autocast casts per op), float64/bfloat16/float16 under
        # 64-true/bf16-true/16-true (Lightning's convert_input ran on the uint8 batch, before this float).
        x = x.to(self.dtype)
        if self._trainer is not None and self.trainer.training:
            x = torch.where(self._mirror_flags(x.shape[0]).to(x.device)[:, None, None, None], x.flip(-1), x)
        return x, targets

    def _mirror_flags(self, batch: int) -> torch.Tensor:
        """(batch,) bool for this device's slice of the current global batch: keyed by (seed, global batch number,
        position), not by the RNG state, so that resumed runs and runs on other device counts mirror the same
        samples (the sampler gives rank r the r-th slice of each global batch, ``amlit.data.sampling``)."""
        trainer = self.trainer
        # Batches trained before this one, over all epochs; restored from checkpoints. batch_to_device (and so
        # this hook) runs before Lightning counts the batch as ready.
        batch_number = trainer.fit_loop.epoch_loop.batch_progress.total.ready
        flags = mirror_flags(mirror_seed(), batch_number, batch * trainer.world_size)
        first = trainer.global_rank * batch
        return torch.from_numpy(flags[first : first + batch])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized images (B, 3, H, W) -> raw embeddings (B, D)."""
        return self.backbone(images)

    @torch.no_grad()
    def embed_views(self, images: torch.Tensor) -> torch.Tensor:
        """Raw embeddings of each image and its mirror, (B, 2, D) float32, from one pass over (2B, 3, H, W)."""
        both = self(torch.cat([images, images.flip(-1)])).float()
        return torch.stack(both.chunk(2), dim=1)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, views: Views = "sum") -> torch.Tensor:
        """Test-time feature: ``"sum"`` (B, D) = L2-normalize(f(x) + f(mirror(x))) (AM-Softmax's deploy net);
        ``"concat"`` (B, 2D) = [f(x), f(mirror(x))] un-normalized (SphereFace's evaluation.m)."""
        pair = self.embed_views(images)
        if views == "concat":
            return pair.flatten(1)
        return nn.functional.normalize(pair.sum(dim=1), dim=1)

    # ---- training ---------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        embeddings = self(images)  # (B, D)
        # Read before the forward, which advances a margin ramp (AMSoftmax.margin_ramp).
        margin = self.head.current_margin() if isinstance(self.head, AMSoftmax) else 0.0
        out = self.head(embeddings, labels)
        with torch.no_grad():
            accuracy = (out.cosine.argmax(dim=1) == labels).float().mean()
        self.log(keys.TRAIN_LOSS, out.loss, prog_bar=True)
        self.log(keys.TRAIN_ACC, accuracy, prog_bar=True)
        if is_logging_step(self.trainer):
            # Only on steps whose metrics reach the loggers: the (C, D) weight norms and five log calls per step
            # would otherwise be spent on values nobody sees. All stay on the device (no host sync here).
            diagnostics = margin_diagnostics(out.cosine, labels, margin, embeddings, self.head.weight)
            self.log_dict(diagnostics)
        return out.loss

    def _param_groups(self) -> list[tuple[list[nn.Parameter], float, float]]:
        """(parameters, learning-rate factor, weight decay) per SGD parameter group: weights, then biases."""
        hp = self.hparams
        biases = [p for name, p in self.named_parameters() if name.endswith(".bias")]
        others = [p for name, p in self.named_parameters() if not name.endswith(".bias")]
        return [(others, 1.0, hp.weight_decay), (biases, hp.bias_lr_factor, 0.0)]

    def configure_optimizers(self):
        hp = self.hparams
        groups = self._param_groups()
        optimizer = torch.optim.SGD(
            [
                {"params": params, "lr": hp.learning_rate * factor, "weight_decay": decay}
                for params, factor, decay in groups
            ],
            lr=hp.learning_rate,
            momentum=hp.momentum,
            **SGD_IMPLEMENTATIONS[hp.get("sgd_implementation")],
        )
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(hp.lr_milestones), gamma=hp.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Every checkpoint says how to use it on new faces (backbone, crop, template, normalization, training
        data): ``amlit embed``/``verify``/``export`` read it instead of guessing (``amlit.inference.record``)."""
        checkpoint[RECORD_KEY] = inference_record(self, self._trainer)

    # ---- loading checkpoints; resuming with changed settings ---------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse, with the settings to look at, a checkpoint whose weights do not fit this model (instead of
        torch's state-dict traceback) or, outside ``fit``, that was trained with another head than this config's
        (``amlit.checkpoint_fit``); note its optimizer and head settings for ``on_train_start``."""
        resuming = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        self._resumed_head_changes = head_changes(checkpoint, self.head, resuming)
        if self._trainer is not None and self.trainer.state.fn == TrainerFn.VALIDATING:
            datamodule = self.trainer.datamodule
            if callable(getattr(datamodule, "manifest", None)):
                check_held_out_identities(checkpoint, datamodule.manifest(), getattr(datamodule, "seed", "?"))
        if "state_dict" in checkpoint:
            check_weights_fit(checkpoint["state_dict"], self.state_dict(), getattr(self, "strict_loading", True))
        self._resumed_hparams = dict(checkpoint.get("hyper_parameters") or {})
        self._resumed_step = checkpoint.get("global_step")

    def on_fit_start(self) -> None:
        """A run that trains no step, or a schedule with milestones the run never reaches, is said before training
        (a shortened paper config would otherwise train at a constant learning rate without a word)."""
        max_steps = self.trainer.max_steps
        if max_steps == 0:
            raise ConfigError(
                "trainer.max_steps=0 trains no step and writes no checkpoint: give the number of optimizer steps "
                "to train, or -1 to train for trainer.max_epochs"
            )
        if max_steps < 0 or self.trainer.fast_dev_run:  # trained by epochs, or a smoke test: no step count to hold
            return
        resumed_step, self._resumed_step = getattr(self, "_resumed_step", None), None
        if isinstance(resumed_step, int) and resumed_step >= max_steps:
            # Lightning ends such a fit at once with status 0; the milestone advice below would be beside the point.
            rank_zero_warn(
                f"the checkpoint is at step {resumed_step}, trainer.max_steps={max_steps}: this fit trains nothing "
                "(a finished run; raise trainer.max_steps to train on)"
            )
            return
        unreached = [step for step in self.hparams.lr_milestones if step >= max_steps]
        if unreached:
            rank_zero_warn(
                f"model.lr_milestones {unreached} lie at or beyond trainer.max_steps={max_steps}: the learning rate "
                f"is never multiplied by {self.hparams.lr_gamma} there (lower them to decay within this run)"
            )

    def on_train_start(self) -> None:
        """After a resume, the restored SGD and MultiStepLR states carry the settings of the run that wrote the
        checkpoint. Where this run's ``model.*`` optimizer settings differ, they are applied (the momentum buffers
        and the step count are kept), so what ``hparams.yaml`` and ``config.yaml`` record is what trains. Changed
        head settings (margin, scale, ...) are in effect already (the head is built from them): both are said, so
        the log shows where the run changed."""
        head_changed, self._resumed_head_changes = getattr(self, "_resumed_head_changes", None), None
        if head_changed:  # already in effect: the head was built from this run's settings
            changes = ", ".join(f"model.head.{k} {old} -> {new}" for k, (old, new) in head_changed.items())
            step = self.trainer.global_step
            rank_zero_info(f"resumed with changed head settings, applied from step {step}: {changes}")
        saved, self._resumed_hparams = getattr(self, "_resumed_hparams", None), None
        if not saved:
            return
        for group in self.trainer.optimizers[0].param_groups:  # a speed switch: this run's, not the checkpoint's
            group.update(SGD_IMPLEMENTATIONS[self.hparams.get("sgd_implementation")])
        plain = lambda value: list(value) if isinstance(value, list | tuple) else value  # noqa: E731 (YAML lists)
        changed = {
            k: (plain(saved[k]), plain(self.hparams[k]))
            for k in OPTIMIZER_HPARAMS
            if k in saved and plain(saved[k]) != plain(self.hparams[k])
        }
        if not changed:
            return  # the restored state is kept bit for bit
        optimizer = self.trainer.optimizers[0]
        schedule = self.trainer.lr_scheduler_configs[0].scheduler
        hp = self.hparams
        schedule.milestones = Counter(hp.lr_milestones)
        schedule.gamma = hp.lr_gamma
        # MultiStepLR's closed form: base lr times gamma for every milestone passed (last_epoch = steps taken).
        decay = hp.lr_gamma ** sum(n for step, n in schedule.milestones.items() if step <= schedule.last_epoch)
        schedule.base_lrs = []
        for group, (_, factor, weight_decay) in zip(optimizer.param_groups, self._param_groups(), strict=True):
            base = hp.learning_rate * factor
            group.update(initial_lr=base, lr=base * decay, momentum=hp.momentum, weight_decay=weight_decay)
            schedule.base_lrs.append(base)
        changes = ", ".join(f"model.{k} {old} -> {new}" for k, (old, new) in changed.items())
        rank_zero_info(
            f"resumed with changed optimizer settings, applied from step {self.trainer.global_step}: {changes} "
            f"(learning rate now {optimizer.param_groups[0]['lr']:.6g})"
        )

    # ---- evaluation: embed every image of each eval set, then run its protocol ---------------------------------
    def _eval_sets(self, stage: str):
        datamodule = self.trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "eval_sets"):
            raise RuntimeError("evaluation needs a data module with eval_sets() (e.g. amlit.data.CasiaDataModule)")
        return datamodule.eval_sets(stage)

    def _start_eval(self, stage: str) -> None:
        eval_sets = self._eval_sets(stage)
        self._eval_views = [s.views for s in eval_sets]
        self._collectors = [EmbeddingCollector(s.num_images).to(self.device) for s in eval_sets]
        self.eval_results = {key: v for key, v in self.eval_results.items() if not key.startswith(f"{stage}/")}

    def _eval_step(self, batch, dataloader_idx: int) -> None:
        images, indices = batch
        self._collectors[dataloader_idx].update(self.embed(images, self._eval_views[dataloader_idx]), indices)

    def _finish_eval(self, stage: str) -> None:
        for eval_set, collector in zip(self._eval_sets(stage), self._collectors, strict=True):
            features = collector.compute()
            missing = int(features.isnan().any(dim=1).sum()) if features.numel() else eval_set.num_images
            if missing and not self.trainer.sanity_checking:
                rank_zero_warn(
                    f"{stage}/{eval_set.name}: {missing} of {eval_set.num_images} images were not embedded "
                    "(limit_*_batches or fast_dev_run?); its metrics use only the pairs with both images"
                )
            for name, value in eval_set.evaluate(features).items():
                key = keys.eval_key(stage, eval_set.name, name)
                self.eval_results[key] = value
                if not isinstance(value, Curve):
                    self.log(key, value, prog_bar=name == "acc")
        self._collectors = []

    def on_validation_epoch_start(self) -> None:
        self._start_eval("val")

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_start(self) -> None:
        self._start_eval("test")

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        images, indices = batch
        return self.embed(images).cpu(), indices.cpu()
