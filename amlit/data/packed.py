"""Packed uint8 shards: an aligned tree decoded once into fixed-size records that a memory map indexes directly.

Layout of a pack folder (``amlit data pack``)::

    manifest.json        format, image size, identities, shard list with sha256, source checksum, skipped files
    shard-00000.u8       raw uint8 (N, H, W, 3) RGB, record i at byte offset i * H * W * 3
    shard-00000.npz      names (N,) and identities (N,) of those records, as unicode arrays (no pickles)
    ...

Shard ``k`` holds the source images ``k * shard_size ... (k + 1) * shard_size - 1`` of the sorted listing, minus the
ones that fail to decode, so a shard's content depends only on the source and the settings: an interrupted pack
resumes by skipping the shards its manifest lists (checked against their sha256). A shard is written to a ``.tmp``
name and renamed when complete, so a half-written shard never looks like a finished one.

Training reads a batch with one fancy index per shard into the page-cached memory map: no decoding, no per-image
Python work beyond the DataLoader's collation (``PackedShards``).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from amlit.compat import rank_zero_warn
from amlit.data.align import TEMPLATES, template_at
from amlit.data.images import (
    BadDataPolicy,
    IdentityFolders,
    file_sha256,
    read_image,
    source_checksum,
    write_json_atomically,
)
from amlit.data.sources import ImageFolder, TrainingImages
from amlit.errors import BadDataError, ConfigError, MissingDataError
from amlit.outputs import check_output
from amlit.progress import progress_bar

FORMAT = "amlit-packed-uint8"
VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 256  # images per decode task: large enough to amortize the pipe, small enough for a smooth progress bar


def shard_file(index: int) -> str:
    return f"shard-{index:05d}.u8"


def index_file(index: int) -> str:
    return f"shard-{index:05d}.npz"


# ---- decoding (runs in worker processes) ---------------------------------------------------------------------
def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only compete


def _decode_chunk(task: tuple[str, list[str], tuple[int, int]]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(root, names, size) -> (decoded uint8 (n_ok, H, W, 3), [(position in names, error message)] of failures)."""
    root, names, size = task
    images, failures = [], []
    for position, name in enumerate(names):
        try:
            images.append(read_image(os.path.join(root, name), size))
        except BadDataError as error:
            failures.append((position, str(error)))
    stacked = np.stack(images) if images else np.empty((0, *size, 3), np.uint8)
    return stacked, failures


# ---- packing --------------------------------------------------------------------------------------------------
class _Plan:
    """What a pack contains, derived from the source listing and the settings alone."""

    def __init__(self, table: pd.DataFrame, shard_size: int) -> None:
        self.names = table["name"].tolist()
        self.identities = table["identity"].tolist()
        self.shard_size = shard_size
        self.num_shards = -(-len(self.names) // shard_size)

    def rows(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, len(self.names)))


def _compatible_shards(output: Path, header: dict, overwrite: bool) -> dict[int, dict]:
    """Finished shards of an earlier run with the same header (after checking their sha256), else {}.

    A manifest of another source or other settings is an error unless ``overwrite`` (then its files go)."""
    path = output / MANIFEST
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        if not overwrite:
            raise BadDataError(
                f"{path} is not a readable pack manifest ({error}): delete {output} or pass --overwrite=true"
            ) from error
        previous = {}
    same = all(previous.get(key) == value for key, value in header.items())
    if not same:
        if not overwrite:
            changed = [key for key, value in header.items() if previous.get(key) != value]
            raise ConfigError(
                f"{output} holds a pack of another source or with other settings (differs in: {', '.join(changed)}): "
                "choose another --output, or pass --overwrite=true to replace it"
            )
        for stale in [*output.glob("shard-*"), path]:
            stale.unlink()
        return {}
    finished = {}
    for entry in previous.get("shards", []):
        data, index = output / entry["file"], output / entry["index"]
        if (
            data.is_file()
            and index.is_file()
            and file_sha256(data) == entry["sha256"]
            and file_sha256(index) == entry["index_sha256"]
        ):
            finished[entry["shard"]] = entry
    return finished


def _templates_for(image_size: tuple[int, int]) -> str:
    fitting = [name for name in TEMPLATES if template_at(name, image_size) is not None]
    return ", ".join(fitting) if fitting else f"none of {', '.join(TEMPLATES)} is for that size: leave it unset"


def _chunks(plan: _Plan, shards: Sequence[int], root: str, size: tuple[int, int]) -> Iterator[tuple]:
    for shard in shards:
        rows = plan.rows(shard)
        for start in range(rows.start, rows.stop, CHUNK):
            yield root, plan.names[start : min(start + CHUNK, rows.stop)], size


def _decoded(tasks: Iterator[tuple], workers: int) -> Iterator[tuple[np.ndarray, list[tuple[int, str]]]]:
    """Decode tasks in order, in ``workers`` processes (0: in this process).

    The workers come from a fork server, not ``fork``: a process that has run torch/OpenCV thread pools (or holds
    tqdm's lock) can leave a forked child deadlocked on a lock it copied in the locked state. The server imports
    this module once (a few seconds: torch, lightning) and forks clean workers from it.
    """
    if workers == 0:
        yield from map(_decode_chunk, tasks)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with context.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_decode_chunk, tasks)


def pack(
    source_root: str | Path,
    output: str | Path,
    image_size: tuple[int, int] = (112, 96),
    shard_size: int = 8192,
    workers: int = 2,
    on_bad: BadDataPolicy = "skip",
    alignment_template: str | None = None,
    identity_folders: IdentityFolders = "auto",
    overwrite: bool = False,
) -> Path:
    """Decode an aligned tree ``<root>/<identity>/<image>.jpg`` once into uint8 shards that training memory-maps.

    Resumable: run the same command again after an interruption and the finished shards are kept.

    Args:
        source_root: the aligned tree (e.g. CASIA-WebFace aligned to 112x96).
        output: folder for ``manifest.json`` and the shards (created).
        image_size: (H, W) the tree is aligned to; every image must have it.
        shard_size: images per shard (8192 x 112 x 96 x 3 bytes = 264 MB).
        workers: decoding processes (0: decode in this process).
        on_bad: a damaged image is ``"skip"``-ped and listed in the manifest, or ``"fail"`` stops naming it.
        alignment_template: name of the 5-point template the tree was aligned with (``amlit.data.align.TEMPLATES``,
            one for crops of ``image_size``), recorded in the manifest.
        identity_folders: which folders are identities (``auto``, ``casia``, ``any``; see ``ImageFolder``).
        overwrite: replace a pack of another source or other settings found in ``output``.

    Returns:
        The path of the written ``manifest.json``.
    """
    root, output = Path(source_root), Path(output)
    image_size = (int(image_size[0]), int(image_size[1]))
    if shard_size < 1 or workers < 0:
        raise ConfigError(f"shard_size={shard_size} must be >= 1 and workers={workers} >= 0")
    if alignment_template is not None and template_at(alignment_template, image_size) is None:
        # template_at refuses an unknown name; a known one must put its points in crops of --image_size
        raise ConfigError(
            f"--alignment_template={alignment_template} is for {TEMPLATES[alignment_template].size[0]}x"
            f"{TEMPLATES[alignment_template].size[1]} crops but --image_size is {image_size[0]}x{image_size[1]}: "
            f"pass the template the tree was aligned with ({_templates_for(image_size)})"
        )
    check_output(output, "--output", folder=True)
    if root.resolve() == output.resolve() or root.resolve() in output.resolve().parents:
        # the shards would become part of the tree they are made from: a folder (or loose files) of the source
        # listing, which then no longer matches the pack it resumes
        raise ConfigError(
            f"--output={output} is inside --source_root={root}: the pack would be written into the tree it packs; "
            "choose an --output outside the source tree"
        )
    if not root.is_dir():
        raise MissingDataError(
            f"--source_root={root} {'is a file' if root.exists() else 'does not exist'}: expected the aligned tree "
            "<root>/<identity id>/<image>.jpg to pack (e.g. CASIA-WebFace aligned by `amlit data align`)"
        )
    source = ImageFolder(root, on_bad=on_bad, identity_folders=identity_folders)
    table = source.image_table(image_size)
    # Files left out count too: adding or repairing one changes what a resumed pack would hold.
    listed = table["name"].tolist() + [entry.path for entry in source.skipped if not entry.path.endswith("/")]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "image_size": list(image_size),
        "shard_size": shard_size,
        "source_checksum": source_checksum(root, listed),
    }
    output.mkdir(parents=True, exist_ok=True)
    plan = _Plan(table, shard_size)
    finished = _compatible_shards(output, header, overwrite)
    manifest = {
        **header,
        "complete": False,
        "layout": "uint8 (N, H, W, 3) RGB, row-major, no header",
        "alignment_template": alignment_template,
        "source_root": str(root.resolve()),
        "shards": [finished[k] for k in sorted(finished)],
    }
    write_json_atomically(output / MANIFEST, manifest)
    todo = [k for k in range(plan.num_shards) if k not in finished]
    if finished:
        print(f"{output}: resuming, {len(finished)} of {plan.num_shards} shards already packed")

    decoded = _decoded(_chunks(plan, todo, str(root), image_size), workers)
    try:
        with progress_bar(
            total=sum(len(plan.rows(k)) for k in todo), desc=f"packing {root.name}", unit="img"
        ) as progress:
            for shard in todo:
                manifest["shards"].append(_write_shard(output, plan, shard, decoded, on_bad, root, progress))
                manifest["shards"].sort(key=lambda entry: entry["shard"])
                write_json_atomically(output / MANIFEST, manifest)
    finally:
        decoded.close()  # stops the worker pool now, also when a damaged image stops the packing

    identities: dict[str, int] = {}
    for entry in manifest["shards"]:
        with np.load(output / entry["index"], allow_pickle=False) as index:
            for identity, count in zip(*np.unique(index["identities"], return_counts=True), strict=True):
                identities[str(identity)] = identities.get(str(identity), 0) + int(count)
    decode_failures = [item for entry in manifest["shards"] for item in entry["skipped"]]
    skipped = [{"name": entry.path, "reason": entry.reason} for entry in source.skipped] + decode_failures
    manifest.update(
        complete=True,
        num_images=sum(entry["count"] for entry in manifest["shards"]),
        num_identities=len(identities),
        identities=dict(sorted(identities.items())),
        skipped=skipped,
    )
    write_json_atomically(output / MANIFEST, manifest)
    print(
        f"{output}: {manifest['num_images']} images of {len(identities)} identities in {plan.num_shards} shards"
        + (f"; skipped {len(skipped)} (listed in {MANIFEST})" if skipped else "")
    )
    return output / MANIFEST


def _write_shard(
    output: Path,
    plan: _Plan,
    shard: int,
    decoded: Iterator,
    on_bad: BadDataPolicy,
    root: Path,
    progress: tqdm,
) -> dict:
    """Consume shard ``shard``'s decoded chunks into ``<shard>.tmp``, then rename; returns its manifest entry."""
    rows = plan.rows(shard)
    data_path, index_path = output / shard_file(shard), output / index_file(shard)
    temporary = data_path.with_name(data_path.name + ".tmp")
    digest = hashlib.sha256()
    kept: list[int] = []
    skipped: list[dict] = []
    with open(temporary, "wb") as file:
        for start in range(rows.start, rows.stop, CHUNK):
            images, failures = next(decoded)
            failed = {position for position, _ in failures}
            for position, message in failures:
                name = plan.names[start + position]
                if on_bad == "fail":
                    raise BadDataError(f"{message}. Fix or remove {root / name}, or pass --on_bad=skip")
                rank_zero_warn(f"skipping an image that cannot be packed: {message}")  # named now, listed at the end
                skipped.append({"name": name, "reason": message})
            kept += [row for row in range(start, min(start + CHUNK, rows.stop)) if row - start not in failed]
            buffer = np.ascontiguousarray(images).data
            file.write(buffer)
            digest.update(buffer)
            progress.update(min(CHUNK, rows.stop - start))
    index_temporary = output / f"shard-{shard:05d}.tmp.npz"
    np.savez(
        index_temporary,
        names=np.array([plan.names[row] for row in kept], dtype=str),
        identities=np.array([plan.identities[row] for row in kept], dtype=str),
    )
    os.replace(index_temporary, index_path)
    os.replace(temporary, data_path)
    return {
        "shard": shard,
        "file": data_path.name,
        "index": index_path.name,
        "count": len(kept),
        "sha256": digest.hexdigest(),
        "index_sha256": file_sha256(index_path),
        "skipped": skipped,
    }


# ---- reading --------------------------------------------------------------------------------------------------
class PackedShards(TrainingImages):
    """Training images from ``amlit data pack`` output: memory-mapped uint8 shards, no decoding while training.

    Args:
        root: the pack folder (holding ``manifest.json``).
        verify: recompute the sha256 of each shard and of its index against the manifest when listing (reads the
            whole pack once; without it only the file sizes and each index's length are checked).
    """

    def __init__(self, root: str | Path, verify: bool = False) -> None:
        self.root = Path(root)
        self.verify = verify
        self._manifest: dict | None = None
        self._names: list[str] | None = None

    def describe(self) -> str:
        return str(self.root)

    def required_paths(self) -> list[tuple[Path, str, str]]:
        return [(self.root, "root", "folder written by `amlit data pack` (manifest.json + shard-*.u8)")]

    def alignment_template(self) -> str | None:
        return self.manifest.get("alignment_template")  # `amlit data pack --alignment_template=...`

    @property
    def manifest(self) -> dict:
        """The checked manifest: complete, of a known format, every shard present with the size its count needs."""
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> dict:
        path = self.root / MANIFEST
        redo = f"run `amlit data pack --source_root=<aligned tree> --output={self.root}`"
        if not path.is_file():
            raise MissingDataError(f"{path} does not exist: {self.root} is not a pack; {redo}")
        damaged = (
            "the pack's manifest is damaged (cut short or edited by a copy or by hand); run `amlit data pack "
            f"--source_root=<aligned tree> --output={self.root} --overwrite=true` to pack it again"
        )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # ValueError: bad JSON, bad UTF-8
            raise BadDataError(f"{path} cannot be read ({error}): {damaged}") from None
        if not isinstance(manifest, dict):
            raise BadDataError(f"{path} holds a JSON {type(manifest).__name__}, not a pack manifest: {damaged}")
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise BadDataError(
                f"{path} is format {manifest.get('format')!r} version {manifest.get('version')!r}, expected "
                f"{FORMAT!r} version {VERSION}: re-pack with this amlit ({redo})"
            )
        if not manifest.get("complete"):
            raise BadDataError(
                f"the pack in {self.root} is incomplete ({len(manifest.get('shards', []))} shards finished): the "
                "packing was interrupted; re-run the same `amlit data pack` command to resume it"
            )
        entry_keys = {"file", "index", "count", "sha256", "index_sha256"}
        shards = manifest.get("shards")
        if (
            not {"image_size", "shard_size"} <= manifest.keys()
            or not isinstance(shards, list)
            or not all(isinstance(entry, dict) and entry_keys <= entry.keys() for entry in shards)
        ):
            raise BadDataError(
                f"{path} lacks the image_size, shard_size or shards (each with {', '.join(sorted(entry_keys))}) "
                f"a pack manifest has: {damaged}"
            )
        record = int(np.prod(manifest["image_size"])) * 3
        for entry in manifest["shards"]:
            data, index = self.root / entry["file"], self.root / entry["index"]
            for missing in (data, index):
                if not missing.is_file():
                    raise BadDataError(f"{missing} is missing: the pack is damaged; {self._repair(manifest)}")
            size = data.stat().st_size
            if size != entry["count"] * record:
                raise BadDataError(
                    f"{data} has {size} bytes, expected {entry['count'] * record} ({entry['count']} records of "
                    f"{record} bytes): the pack is damaged; {self._repair(manifest)}"
                )
            if self.verify:
                # The index too: another shard's index of the same length would silently relabel every record.
                for file, key in ((data, "sha256"), (index, "index_sha256")):
                    if file_sha256(file) != entry[key]:
                        raise BadDataError(
                            f"{file} does not match its {key} in {path}: the pack is damaged; {self._repair(manifest)}"
                        )
        return manifest

    def _repair(self, manifest: dict) -> str:
        """What to run: the pack command again, which keeps the shards that match the manifest and re-packs the
        rest (``_compatible_shards``)."""
        height, width = manifest["image_size"]
        template = manifest.get("alignment_template")
        command = (
            f"amlit data pack --source_root={manifest.get('source_root', '<aligned tree>')} --output={self.root} "
            f"--image_size=[{height},{width}] --shard_size={manifest['shard_size']}"
            + (f" --alignment_template={template}" if template else "")
        )
        return f"re-run `{command}` (it re-packs the damaged shards and keeps the intact ones)"

    def image_table(self, image_size: tuple[int, int]) -> pd.DataFrame:
        self._check_size(image_size)
        return self._table()

    def _check_size(self, image_size: tuple[int, int]) -> None:
        packed_size = tuple(self.manifest["image_size"])
        if tuple(image_size) != packed_size:
            raise ConfigError(
                f"the pack {self.root} holds {packed_size[0]}x{packed_size[1]} images but data.image_size is "
                f"{image_size[0]}x{image_size[1]}: set data.image_size=[{packed_size[0]},{packed_size[1]}] or pack "
                "a tree aligned to the size you train at"
            )

    def _table(self) -> pd.DataFrame:
        names, identities = [], []
        for entry in self.manifest["shards"]:
            shard_names, shard_identities = self._read_index(entry)
            names += shard_names
            identities += shard_identities
        self._names = names
        if not names:
            raise BadDataError(f"the pack in {self.root} holds no images")
        return pd.DataFrame({"identity": identities, "name": names})

    def _read_index(self, entry: dict) -> tuple[list[str], list[str]]:
        """Names and identities of one shard's records, checked to be as many as the manifest says."""
        path = self.root / entry["index"]
        try:
            with np.load(path, allow_pickle=False) as index:
                names, identities = index["names"].tolist(), index["identities"].tolist()
        except (zipfile.BadZipFile, ValueError, EOFError, KeyError, OSError) as error:
            # A flipped bit shows up here as a CRC error of the zip member, a truncation as EOF or a bad zip.
            raise BadDataError(
                f"{path} cannot be read ({error}): the pack is damaged; {self._repair(self.manifest)}"
            ) from error
        if len(names) != entry["count"] or len(identities) != entry["count"]:
            raise BadDataError(
                f"{path} lists {len(names)} names and {len(identities)} identities but {self.root / MANIFEST} says "
                f"{entry['file']} holds {entry['count']} records: the pack is damaged; {self._repair(self.manifest)}"
            )
        return names, identities

    def _positions(self, names: Sequence[str]) -> np.ndarray:
        """Record number (over all shards, in order) of each name."""
        if self._names is None:
            self._table()
        position = {name: k for k, name in enumerate(self._names)}
        missing = [name for name in names if name not in position]
        if missing:
            raise BadDataError(f"{len(missing)} requested images are not in the pack {self.root}, e.g. {missing[:3]}")
        return np.fromiter((position[name] for name in names), np.int64, len(names))

    def dataset(self, names: Sequence[str], targets: Sequence[int], image_size: tuple[int, int]) -> Dataset:
        self._check_size(image_size)
        packed_size = tuple(self.manifest["image_size"])
        shards = [(self.root / entry["file"], entry["count"]) for entry in self.manifest["shards"]]
        return ShardRecords(shards, self._positions(list(names)), targets, packed_size)


class ShardRecords(Dataset):
    """``(uint8 image (H, W, 3), int64 target)`` from memory-mapped shards; ``__getitems__`` gathers a batch.

    The memory maps are opened lazily in each process (DataLoader workers each get their own).
    """

    def __init__(
        self,
        shards: Sequence[tuple[Path, int]],
        positions: np.ndarray,
        targets: Sequence[int],
        image_size: tuple[int, int],
    ) -> None:
        if len(positions) != len(targets):
            raise ValueError(f"{len(positions)} images but {len(targets)} targets")
        self.shards = [(Path(path), int(count)) for path, count in shards]
        self.image_size = tuple(image_size)
        starts = np.cumsum([0] + [count for _, count in self.shards])
        # Where each item lives: shard number and record within that shard, both (N,).
        self.shard_of = np.searchsorted(starts, positions, side="right") - 1
        self.record_of = positions - starts[self.shard_of]
        self.targets = np.asarray(targets, dtype=np.int64)
        self._maps: list[np.memmap] | None = None
        self._maps_pid: int | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None, "_maps_pid": None}  # maps are reopened in the receiving process

    def _records(self) -> list[np.memmap]:
        if self._maps is None or self._maps_pid != os.getpid():
            self._maps = [
                np.memmap(path, np.uint8, "r", shape=(count, *self.image_size, 3)) if count else None
                for path, count in self.shards
            ]
            self._maps_pid = os.getpid()
        return self._maps

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        record = self._records()[self.shard_of[index]][self.record_of[index]]
        return torch.from_numpy(np.array(record)), int(self.targets[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch: one sorted fancy index per shard into a (B, H, W, 3) array, returned as per-item views
        (``default_collate`` then stacks them with one copy, into shared memory in a worker)."""
        indices = np.asarray(indices, dtype=np.int64)
        batch = np.empty((len(indices), *self.image_size, 3), np.uint8)
        shard_of, record_of = self.shard_of[indices], self.record_of[indices]
        maps = self._records()
        for shard in np.unique(shard_of):
            slots = np.flatnonzero(shard_of == shard)
            slots = slots[np.argsort(record_of[slots], kind="stable")]  # read each shard front to back
            batch[slots] = maps[shard][record_of[slots]]
        images = torch.from_numpy(batch)
        return [(images[k], int(target)) for k, target in enumerate(self.targets[indices])]
