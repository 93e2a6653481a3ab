"""Helpers of the inference tests: a small checkpoint in amlit's format (fast), and a trained-and-tested demo run
(fit 1 step + amlit test, whose LFW pair cosines are recorded) for the end-to-end tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amlit.backbones import SphereFace
from amlit.checkpoint_io import SafeCheckpointIO
from amlit.data.synthetic import SyntheticSpec
from amlit.inference.record import RECORD_KEY, backbone_record

EMBEDDING_DIM = 16
REPO = Path(__file__).resolve().parents[2]
# Tiny generated data: 10 LFW folds of 2 + 2 pairs, a BLUFR-style protocol, 40 MegaFace-style distractors.
SPEC = SyntheticSpec(
    train_identities=12, images_per_identity=6, test_identities=20, test_images_per_identity=3, pairs_per_fold=2
)


def record_of(backbone: SphereFace, template: str | None = "sphereface_112x96") -> dict:
    """An inference record as FaceVerificationModule.on_save_checkpoint writes it, for ``backbone``."""
    return backbone_record(backbone, alignment_template=template)


def write_checkpoint(path: Path, template: str | None = "sphereface_112x96", seed: int = 0, **extra) -> SphereFace:
    """A checkpoint of a small random SphereFace-20 with its inference record, written by SafeCheckpointIO."""
    torch.manual_seed(seed)
    backbone = SphereFace(embedding_dim=EMBEDDING_DIM, width_multiplier=0.125).eval()
    checkpoint = {
        "pytorch-lightning_version": "2.6.6",
        "global_step": 3,
        "state_dict": {f"backbone.{k}": v for k, v in backbone.state_dict().items()},
        RECORD_KEY: record_of(backbone, template),
        **extra,
    }
    SafeCheckpointIO().save_checkpoint(checkpoint, path)
    return backbone


@dataclass
class TrainedAndTested:
    checkpoint: Path
    results: Path  # the ResultsWriter folder: results.json, model_card.json/.md
    lfw: Path  # the LFW-layout tree with pairs.txt that amlit test scored
    lfw_scores: np.ndarray  # the pair cosines amlit test computed, in pairs.txt order


def train_and_test(run: Path) -> TrainedAndTested:
    """``amlit fit`` of the demo config for one step, then ``amlit test`` on its checkpoint (LFW, BLUFR, MegaFace on
    tiny generated data), in ``run``, recording the LFW pair cosines amlit test computes."""
    import yaml

    import amlit.eval.verification as verification
    from amlit.cli import run_cli

    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(run / "ckpt"), "save_last": True, "save_top_k": 0},
        },
        {
            "class_path": "amlit.callbacks.ResultsWriter",
            "init_args": {"output_dir": str(run / "results"), "model_license": "test license"},
        },
    ]
    (run / "callbacks.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    spec = SPEC
    args = [
        "--config",
        str(REPO / "configs" / "demo.yaml"),
        "--config",
        str(run / "callbacks.yaml"),
        f"--trainer.default_root_dir={run}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0",
        f"--data.root={run / 'synthetic'}",
        f"--data.train_identities={spec.train_identities}",
        f"--data.images_per_identity={spec.images_per_identity}",
        f"--data.test_identities={spec.test_identities}",
        f"--data.test_images_per_identity={spec.test_images_per_identity}",
        f"--data.pairs_per_fold={spec.pairs_per_fold}",
        "--data.val_identities=0",
        "--data.megaface_distractors=40",
        "--data.batch_size=8",
        "--data.num_workers=0",
        "--model.backbone.init_args.width_multiplier=0.125",
    ]
    cwd = os.getcwd()
    os.chdir(run)
    recorded: list[torch.Tensor] = []
    real_pair_scores = verification.pair_scores
    try:
        run_cli(["fit", *args, "--trainer.max_steps=1"])
        checkpoint = run / "ckpt" / "last.ckpt"

        def spy(features, pairs):
            scores = real_pair_scores(features, pairs)
            recorded.append(scores.cpu())
            return scores

        verification.pair_scores = spy
        cli = run_cli(["test", *args, f"--ckpt_path={checkpoint}"])
    finally:
        verification.pair_scores = real_pair_scores
        os.chdir(cwd)
    lfw = Path(cli.datamodule.lfw_root)
    return TrainedAndTested(checkpoint, run / "results", lfw, recorded[0].numpy())
