"""CASIA-WebFace as a LightningDataModule: identity table, overlap removal, held-out validation identities, LFW.

Training images come from an injected ``TrainingImages`` source (``sources.py``: an aligned folder tree
``<identity>/<image>.jpg``, insightface RecordIO, or packed shards), faces already aligned to ``image_size``
(112x96 as SphereFace/AM-Softmax, or 112x112 insightface crops). Identities are CASIA's 7-digit ids.
Labels are 0..C-1 in sorted identity order after removing the excluded and the held-out identities; ``num_classes``
is known as soon as the module is constructed, so the CLI can link it to the model.

Batches are ``(uint8 images (B, H, W, 3), int64 targets (B,))``; ``batch_size`` is the *global* batch (the paper's
256), split evenly over the devices.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from amlit import preemption
from amlit.data.device_resident import (
    ResidencyPolicy,
    ResidentImages,
    ResidentIndices,
    SampleIndices,
    check_fixed_images,
    collate_indices,
    fits,
    resident_bytes,
)
from amlit.data.megaface import MegaFaceImages, megaface_images
from amlit.data.overlap import assign_labels, read_id_list, remove_identities
from amlit.data.provenance import training_provenance
from amlit.data.sampling import EpochShardSampler, ResumableLoader
from amlit.data.sources import ImageFiles, TrainingImages
from amlit.data.verification_bin import bin_eval_set
from amlit.errors import BadDataError, ConfigError, MissingDataError, listed
from amlit.eval.blufr import BlufrConfig, evaluate_blufr, read_blufr_config, warn_if_unofficial_trials
from amlit.eval.evalset import EvalSet
from amlit.eval.far import FarRule, check_far
from amlit.eval.pairs import PairList, fold_pairs_to_list, lines_naming, read_lfw_pairs, sample_fold_pairs
from amlit.eval.verification import PROTOCOL_VIEWS, PairProtocol, pair_verification_metrics
from amlit.listfiles import PathOrPaths, as_paths

# Test sets of the protocols that are not pair lists, by the name in their result keys (test/<name>/<metric>,
# amlit.keys.eval_key): a .bin set is named after its file, and one named after these would write its accuracy and
# ROC into that protocol's results (and amlit report read them as BLUFR's or MegaFace's).
BLUFR_SET, MEGAFACE_SET = "blufr", "megaface"
PROTOCOL_SET_NAMES = {BLUFR_SET: "BLUFR", MEGAFACE_SET: "MegaFace"}

WorkerStart = Literal["fork", "forkserver", "spawn"]  # torch.multiprocessing start methods


def _lfw_path(file_name: str) -> str:
    """``Aaron_Eckhart_0001.jpg`` -> ``Aaron_Eckhart/Aaron_Eckhart_0001.jpg`` (the LFW tree layout)."""
    return f"{file_name.rsplit('_', 1)[0]}/{file_name}"


def _blufr_metrics(features, names: list[str], config: BlufrConfig, far_rule: FarRule) -> dict[str, float]:
    return evaluate_blufr((names, features), config, far_rule=far_rule)


def _require_paths(paths: list[tuple[Path, str, str]]) -> None:
    """Fail once, naming every configured path that does not exist: (path, setting, what it should be)."""
    absent = [(path, setting, what) for path, setting, what in paths if not path.exists()]
    if absent:
        # The example names a setting that is missing: each source has its own (ImageFolder root, RecordIO path).
        raise MissingDataError(
            "data not found:\n"
            + "\n".join(f"  {setting}: {path} (expected: {what})" for path, setting, what in absent)
            + "\nPrepare the data as in the README ('Data') or point the settings to it, e.g. "
            f"--{absent[0][1]}=/path/to/it"
        )


def held_out_pairs(table: pd.DataFrame, pairs_per_fold: int, seed: int) -> PairList:
    """LFW-style pairs among held-out identities (``table``: identity, name): 10 identity-disjoint folds, or
    fewer when there are fewer than 20 identities (a fold needs two identities for its mismatched pairs)."""
    files = {identity: list(group["name"]) for identity, group in table.groupby("identity", sort=True)}
    numbered = {identity: list(range(len(paths))) for identity, paths in files.items()}
    num_folds = min(10, len(files) // 2)
    # Folds hold 2-3 identities until there are 10 of them: more identities per fold needs val_identities > 20.
    sizes = sorted({len(files) // num_folds, -(-len(files) // num_folds)})
    advice = (
        f"lower data.val_pairs_per_fold (now {pairs_per_fold}), or hold out more identities with data.val_identities "
        f"(now {len(files)}: {num_folds} folds of {'-'.join(map(str, sizes))} identities; a fold gets more "
        "identities once there are more than 20), or set data.val_identities=0 to train without validation"
    )
    rng = np.random.default_rng(seed)
    try:
        folds = sample_fold_pairs(numbered, num_folds, pairs_per_fold, rng=rng, advice=advice)
    except BadDataError as error:
        raise ConfigError(f"held-out validation pairs: {error}") from None
    return fold_pairs_to_list(folds, lambda identity, number: files[identity][number])


class CasiaDataModule(L.LightningDataModule):
    """CASIA-WebFace (or any set of aligned faces grouped by identity) for training, LFW pairs for testing.

    Args:
        train: the training images: ``amlit.data.ImageFolder`` (aligned tree ``<identity>/<image>``),
            or another ``TrainingImages`` source (RecordIO, packed shards).
        lfw_root: aligned LFW tree ``<Name>/<Name>_<%04d>.jpg`` (needed by ``test``).
        lfw_pairs: LFW ``pairs.txt`` (View 2: 10 folds of 300 matched + 300 mismatched pairs).
        blufr_config: the BLUFR toolkit's ``blufr_lfw_config.mat``; adds the BLUFR protocol (10 trials of
            verification at FAR 0.01%/0.1% and open-set identification at FAR 1%) on the images of ``lfw_root``.
        megaface_probes: aligned FaceScrub probe tree ``<Name>/<image>``; with ``megaface_distractors`` adds
            MegaFace challenge 1 (rank-1 identification with the distractors, TAR at FAR=1e-6) to ``test``.
        megaface_distractors: aligned MegaFace distractor tree: every image below it (any depth) is a distractor,
            unless ``megaface_distractor_list`` names a subset.
        megaface_distractor_list: optional devkit list (JSON with ``path``) of distractor images to use, relative
            to ``megaface_distractors`` (e.g. the 1M list); all images of the tree otherwise.
        megaface_identities: optional file of probe identities to keep (``facescrub_set1_names_80.txt``).
        verification_bins: insightface verification ``.bin`` files (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``)
            added to ``test``, each named after its file (read without executing the pickle); one path or a list.
        pair_protocol: how the LFW pairs and the ``.bin`` sets are scored: ``"amsoftmax"`` (flip-sum feature, the
            paper's) or ``"sphereface"`` (SphereFace's evaluation.m: concatenated features, training-fold mean
            subtracted).
        far_rule: which scores a FAR target accepts, in every TAR/VR/DIR@FAR of the test sets: ``"evalroc"`` (the
            BLUFR toolkit's rule, the default), ``"at_most"`` or ``"interpolated"`` (``amlit.eval.far``).
        exclude_id_lists: files of identity ids to remove (one 7-digit id per line), one path or a list; the paper
            removes 59 (17 overlapping LFW + 42 overlapping MegaFace/FaceScrub) -> 10,516 classes.
        val_identities: training identities held out to build verification pairs for ``val`` during fit
            (model selection never looks at LFW); 10 folds from 20 identities on, fewer below. 0 disables.
        val_pairs_per_fold: matched (and as many mismatched) held-out pairs per fold, 10 folds.
        image_size: (H, W) of the aligned crops.
        alignment_template: the five-point template the training crops were aligned with
            (``sphereface_112x96``, ``insightface_112x112``); recorded in checkpoints and model cards so that
            ``amlit embed`` aligns new faces the same way. None: what the source records (``alignment.json`` of
            ``amlit data align``, a pack's manifest, an insightface 112x112 ``.rec``), else unrecorded.
        batch_size: global training batch, divided by the number of devices.
        eval_batch_size: per-device batch for embedding evaluation images.
        num_workers: DataLoader worker processes per device.
        pin_memory: page-locked loader batches, so that their copy to the GPU runs asynchronously (None: when CUDA
            is available).
        prefetch_factor: batches each loader worker prepares ahead (None: PyTorch's default, 2).
        multiprocessing_context: how loader workers start (None: the platform's default, ``fork`` on Linux).
            ``forkserver`` or ``spawn`` start them from a fresh process: the way out when forked workers hang at
            start-up (a thread of the trainer held a lock at the fork). They start slower, as each imports torch;
            the sources reopen their files in each worker (packed shards are mapped again, not copied).
        device_resident: hold all training images in device memory and gather each batch there
            (``amlit.data.device_resident``): ``"never"``, ``"if_fits"`` (at most half the free device memory,
            else the loader) or ``"always"``. Same batches, same order and resume as the loader.
        seed: seed of the held-out identity choice and the validation pairs.
    """

    def __init__(
        self,
        train: TrainingImages,
        lfw_root: str | Path | None = None,
        lfw_pairs: str | Path | None = None,
        blufr_config: str | Path | None = None,
        megaface_probes: str | Path | None = None,
        megaface_distractors: str | Path | None = None,
        megaface_distractor_list: str | Path | None = None,
        megaface_identities: str | Path | None = None,
        verification_bins: PathOrPaths = (),
        pair_protocol: PairProtocol = "amsoftmax",
        far_rule: FarRule = "evalroc",
        exclude_id_lists: PathOrPaths = (),
        val_identities: int = 0,
        val_pairs_per_fold: int = 100,
        image_size: tuple[int, int] = (112, 96),
        alignment_template: str | None = None,
        batch_size: int = 256,
        eval_batch_size: int = 256,
        num_workers: int = 4,
        pin_memory: bool | None = None,
        prefetch_factor: int | None = None,
        multiprocessing_context: WorkerStart | None = None,
        device_resident: ResidencyPolicy = "never",
        seed: int = 0,
    ) -> None:
        super().__init__()
        verification_bins, exclude_id_lists = as_paths(verification_bins), as_paths(exclude_id_lists)
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"batch sizes must be >= 1, got batch_size={batch_size}, eval={eval_batch_size}")
        if (lfw_root is None) != (lfw_pairs is None):
            raise ConfigError("set both data.lfw_root and data.lfw_pairs for LFW testing, or neither")
        if blufr_config is not None and lfw_root is None:
            raise ConfigError("data.blufr_config needs the LFW images: set data.lfw_root and data.lfw_pairs too")
        if (megaface_probes is None) != (megaface_distractors is None):
            raise ConfigError("set both data.megaface_probes and data.megaface_distractors for MegaFace, or neither")
        _require_paths(
            [
                *[(path, f"data.train.{setting}", what) for path, setting, what in train.required_paths()],
                *[(p, "data.exclude_id_lists", "identity exclusion list") for p in exclude_id_lists],
                *([(Path(lfw_root), "data.lfw_root", "aligned LFW tree <Name>/<Name>_0001.jpg")] if lfw_root else []),
                *([(Path(lfw_pairs), "data.lfw_pairs", "LFW pairs.txt")] if lfw_pairs else []),
                *([(Path(blufr_config), "data.blufr_config", "blufr_lfw_config.mat")] if blufr_config else []),
                *[(p, "data.verification_bins", "insightface verification .bin") for p in verification_bins],
                *[
                    (Path(path), f"data.{setting}", what)
                    for path, setting, what in (
                        (megaface_probes, "megaface_probes", "aligned FaceScrub tree <Name>/<image>"),
                        (megaface_distractors, "megaface_distractors", "aligned MegaFace distractor tree"),
                        (megaface_distractor_list, "megaface_distractor_list", "devkit distractor list (JSON)"),
                        (megaface_identities, "megaface_identities", "FaceScrub names, one per line"),
                    )
                    if path is not None and megaface_probes is not None  # MegaFace off: its other settings unused
                ],
            ]
        )
        self.train = train
        self.lfw_root = Path(lfw_root) if lfw_root is not None else None
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self.device_resident = device_resident
        if device_resident != "never":
            check_fixed_images(train)
        self._resident: ResidentImages | None = None
        self.seed = seed

        if exclude_id_lists and not train.identities_are_ids:
            raise ConfigError(
                f"data.exclude_id_lists name CASIA identity ids, but {train.describe()} only knows class numbers: "
                "set data.train.identity_list (the train.lst the .rec was built from, or one CASIA id per class) "
                "so the right identities are removed"
            )
        table = train.image_table(self.image_size)
        identities, images = table["identity"].nunique(), len(table)
        excluded = [i for path in exclude_id_lists for i in read_id_list(path)]
        table, removed, absent = remove_identities(table, excluded)
        report = f"{train.describe()}: {identities} identities, {images} images"
        if exclude_id_lists:
            report += (
                f"; removed {len(removed)} listed identities ({images - len(table)} images; lists: "
                f"{', '.join(map(str, exclude_id_lists))}) -> {table['identity'].nunique()} identities, "
                f"{len(table)} images"
            )
            if absent:
                report += f"; {len(absent)} listed ids are not in the data: {listed(absent, 10)}"

        self.val_pairs: PairList | None = None
        if val_identities > 0:
            remaining = sorted(table["identity"].unique())
            if not 4 <= val_identities <= len(remaining) - 2:
                raise ConfigError(
                    f"val_identities={val_identities}: hold out at least 4 identities (two folds of two) and leave "
                    f"at least 2 of the {len(remaining)} for training, or set 0 to disable validation"
                )
            held_out = set(np.random.default_rng(seed).choice(remaining, val_identities, replace=False))
            is_val = table["identity"].isin(held_out)
            self.val_table = table[is_val].reset_index(drop=True)
            self.val_pairs = held_out_pairs(self.val_table, val_pairs_per_fold, seed)
            table = table[~is_val].reset_index(drop=True)
            report += f"; {val_identities} identities held out for validation ({len(self.val_pairs)} pairs)"
        if table["identity"].nunique() < 2:
            # A classifier needs two classes; without this the head refused "num_classes >= 2" naming no data.
            raise BadDataError(
                f"{report} -> {table['identity'].nunique()} identities left to train on; training needs at least 2: "
                "point data.train at a folder of identity folders (or a pack/.rec of several identities), or remove "
                "fewer identities"
            )
        self.train_table = assign_labels(table)
        self.num_classes = int(self.train_table["label"].max()) + 1
        self.removed_identities = removed
        self._manifest = {
            "train": train.describe(),
            "identities": int(identities),
            "exclude_id_lists": [str(path) for path in exclude_id_lists],
            "removed_identities": removed,
            "listed_but_absent": absent,
            "val_identities": int(val_identities),
            "num_classes": self.num_classes,
            "train_images": int(len(table)),
            "image_size": list(self.image_size),
            **training_provenance(train, alignment_template, self.image_size, self.train_table, exclude_id_lists),
        }
        report += f" -> {self.num_classes} training classes, {len(self.train_table)} training images"
        rank_zero_info(report)

        self.lfw: PairList | None = None
        if self.lfw_root is not None:
            self.lfw = read_lfw_pairs(lfw_pairs)
            missing = [p for p in self.lfw.images if not (self.lfw_root / p).is_file()]
            if missing:
                first_line, first_image = lines_naming(lfw_pairs, set(missing))[0]
                raise MissingDataError(
                    f"{lfw_pairs}:{first_line}: names {first_image}, which is not under data.lfw_root={self.lfw_root} "
                    f"({len(missing)} of the {len(self.lfw.images)} images the pairs name are missing, e.g. "
                    f"{listed(missing, 3)}): point data.lfw_root at the aligned LFW tree <Name>/<Name>_0001.jpg"
                )
        self.blufr: BlufrConfig | None = None
        if blufr_config is not None:
            self.blufr = read_blufr_config(blufr_config)
            warn_if_unofficial_trials(self.blufr, blufr_config)
            self._blufr_images = [_lfw_path(name) for name in self.blufr.image_list]
            missing = [p for p in self._blufr_images if not (self.lfw_root / p).is_file()]
            if missing:
                raise MissingDataError(
                    f"{len(missing)} of the {len(self._blufr_images)} images of the BLUFR list {blufr_config} are "
                    f"not under {self.lfw_root}, e.g. {', '.join(missing[:3])}: BLUFR needs all LFW images aligned"
                )

        self.pair_protocol = pair_protocol
        check_far(0.0, far_rule)
        self.far_rule = far_rule
        self.verification_bins = verification_bins
        names = ["lfw"] * (self.lfw is not None) + [p.stem for p in self.verification_bins]
        for path in self.verification_bins:
            if path.stem in PROTOCOL_SET_NAMES:
                raise ConfigError(
                    f"{path}: a .bin test set is named after its file, and '{path.stem}' is the "
                    f"{PROTOCOL_SET_NAMES[path.stem]} test set's name: the .bin's results would be written into "
                    f"test/{path.stem}/... and read as {PROTOCOL_SET_NAMES[path.stem]}'s (whether or not it is "
                    f"configured); rename the file, e.g. {path.name} -> {path.stem}_bin.bin"
                )
        if len(set(names)) != len(names):
            raise ConfigError(
                f"test sets need distinct names, got {names} (LFW pairs.txt is 'lfw', a .bin is named after its "
                "file): rename a .bin file, e.g. lfw.bin -> lfw_bin.bin, or drop one of them"
            )
        self._bin_sets: list[EvalSet] | None = None  # read on first use, then kept (the files are ~50 MB each)
        self.megaface: MegaFaceImages | None = None
        if megaface_probes is not None:
            self.megaface = megaface_images(
                Path(megaface_probes), Path(megaface_distractors), megaface_distractor_list, megaface_identities
            )

    def manifest(self) -> dict:
        """What the model is trained on: source, identity counts, removed ids and their lists, classes, images."""
        return dict(self._manifest)

    # ---- datasets -------------------------------------------------------------------------------------------
    def _pair_set(self, name: str, dataset, pairs: PairList, protocol: PairProtocol = "amsoftmax") -> EvalSet:
        evaluate = partial(pair_verification_metrics, pairs=pairs, protocol=protocol, far_rule=self.far_rule)
        return EvalSet(name, dataset, len(pairs.images), evaluate, views=PROTOCOL_VIEWS[protocol])

    def eval_sets(self, stage: str) -> list[EvalSet]:
        """Evaluation sets of a stage: ``"val"`` (held-out training identities) or ``"test"`` (LFW, the .bin sets,
        BLUFR, MegaFace: whichever are configured)."""
        if stage == "val":
            if self.val_pairs is None:
                return []
            images = self.val_pairs.images
            dataset = self.train.eval_dataset(images, range(len(images)), self.image_size)
            return [self._pair_set("heldout", dataset, self.val_pairs)]
        if stage == "test":
            sets = []
            if self.lfw is not None:
                images = self.lfw.images
                dataset = ImageFiles(self.lfw_root, images, range(len(images)), self.image_size)
                sets.append(self._pair_set("lfw", dataset, self.lfw, self.pair_protocol))
            if self._bin_sets is None:
                self._bin_sets = [
                    bin_eval_set(p, self.image_size, self.pair_protocol, self.far_rule) for p in self.verification_bins
                ]
            sets += self._bin_sets
            if self.blufr is not None:
                images = self._blufr_images
                dataset = ImageFiles(self.lfw_root, images, range(len(images)), self.image_size)
                evaluate = partial(_blufr_metrics, names=images, config=self.blufr, far_rule=self.far_rule)
                sets.append(EvalSet(BLUFR_SET, dataset, len(images), evaluate))
            if self.megaface is not None:
                images = self.megaface.files
                dataset = ImageFiles(Path("/"), images, range(len(images)), self.image_size)
                evaluate = partial(self.megaface.evaluate, far_rule=self.far_rule)
                sets.append(EvalSet(MEGAFACE_SET, dataset, len(images), evaluate))
            if not sets:
                raise ConfigError(
                    "no test set configured: set data.lfw_root and data.lfw_pairs, data.verification_bins, or "
                    "data.megaface_probes and data.megaface_distractors"
                )
            return sets
        raise ValueError(f"unknown evaluation stage {stage!r}")

    # ---- loaders --------------------------------------------------------------------------------------------
    def _worker_options(self) -> dict:
        """How many loader workers and how they start (PyTorch refuses a start method without workers)."""
        start = {"multiprocessing_context": self.multiprocessing_context} if self.num_workers else {}
        return {"num_workers": self.num_workers, **start}

    def _loader_options(self) -> dict:
        prefetch = {"prefetch_factor": self.prefetch_factor} if self.num_workers and self.prefetch_factor else {}
        return {
            **self._worker_options(),
            "persistent_workers": self.num_workers > 0,
            "pin_memory": torch.cuda.is_available() if self.pin_memory is None else self.pin_memory,
            "worker_init_fn": preemption.worker_init,  # workers outlive a SIGTERM/SIGUSR1 to the whole job
            **prefetch,  # as the start method, refused without workers
        }

    def _loader(self, dataset, batch_size: int) -> DataLoader:
        """Evaluation loader: in order, every image (Lightning shards it with a DistributedSampler under DDP)."""
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, **self._loader_options())

    def train_dataloader(self) -> DataLoader:
        """Order by ``(seed, epoch)``, each global batch split over the devices; resumes mid-epoch exactly
        (``amlit.data.sampling``)."""
        table = self.train_table
        dataset = self.train.dataset(table["name"], table["label"], self.image_size)
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

        def batches_done() -> int:  # global batches trained so far, over all epochs (restored from a checkpoint)
            return trainer.fit_loop.epoch_loop.batch_progress.total.processed

        sampler = EpochShardSampler(
            len(dataset), self.batch_size, world, rank, self.seed, batches_done if trainer is not None else None
        )
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        listing = self._manifest["train_listing_sha256"]  # a resume on other images is refused (ResumableLoader)
        if self._use_resident(len(dataset), device):
            if self._resident is None or self._resident.device != device:
                self._resident = ResidentImages(dataset, self.image_size, device, self._worker_options())
            # Indices only: the batch is gathered on the device (transfer_batch_to_device).
            indices = SampleIndices(len(dataset))
            return ResumableLoader(
                indices, sampler, listing, collate_fn=collate_indices, pin_memory=device.type == "cuda"
            )
        return ResumableLoader(dataset, sampler, listing, **self._loader_options())

    def _use_resident(self, num_samples: int, device: torch.device) -> bool:
        if self.device_resident == "never":
            return False
        size = f"{resident_bytes(num_samples, self.image_size) / 2**30:.1f} GiB"
        if self.device_resident == "if_fits" and not fits(num_samples, self.image_size, device):
            rank_zero_info(f"training images ({size}) do not fit in {device} memory: read by the loader")
            return False
        rank_zero_info(f"training images ({size}) held in {device} memory, batches gathered there")
        return True

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Device-resident training batches (indices) are gathered on the device; others are copied as usual."""
        if isinstance(batch, ResidentIndices) and self._resident is not None:
            return self._resident.gather(batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(s.dataset, self.eval_batch_size) for s in self.eval_sets("val")]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(s.dataset, self.eval_batch_size) for s in self.eval_sets("test")]

    def predict_dataloader(self) -> DataLoader:
        """The LFW images: those of the pairs and, with BLUFR, of its list (``amlit predict`` writes their embeddings
        file); MegaFace's and the ``.bin`` sets' images are not in it (``amlit embed`` embeds any aligned tree)."""
        if self.lfw is None:
            raise ConfigError("no test images configured to embed: set data.lfw_root and data.lfw_pairs")
        images = sorted(set(self.lfw.images) | set(self._blufr_images if self.blufr is not None else []))
        return self._loader(
            ImageFiles(self.lfw_root, images, range(len(images)), self.image_size), self.eval_batch_size
        )
