"""Checkpoint files that survive full disks and damage, and never run code from a file.

Lightning's default ``TorchCheckpointIO`` (2.6) serializes into memory and lets fsspec write through a temporary
file in the *system* temp dir; when the checkpoint folder is on another filesystem (a Docker volume, NFS, Lustre),
the final step is a copy over the old file, so a full disk cuts the last good ``last.ckpt`` short. Loading trusts
``torch.load``: a truncated file gives a traceback, a flipped byte inside a tensor gives silently wrong weights, and
``--weights_only=false`` runs whatever code a pickle carries.

``SafeCheckpointIO`` (installed by ``amlit``'s CLI unless the config names another ``CheckpointIO``):

- **save**: stores a SHA-256 of every tensor and plain value of the checkpoint under ``amlit_checksum``, writes to
  a temporary file *beside* the target, flushes and fsyncs it, renames it over the target (atomic on POSIX) and
  fsyncs the folder. Any failure removes the temporary file, keeps the old checkpoint and raises ``StorageError``.
- **load**: always ``weights_only=True`` (tensors and plain Python values; no code runs), whatever
  ``--weights_only`` says. A missing file, an unreadable one, a checksum mismatch, or a file holding other pickled
  objects is refused with one message (``MissingDataError`` / ``BadDataError``: ``amlit`` prints it, exit 2).
"""

from __future__ import annotations

import errno
import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.utilities import rank_zero_warn

from amlit.data.images import remove_stale_partials, write_atomically
from amlit.errors import BadDataError, MissingDataError, StorageError, cause_of, listed

CHECKSUM_KEY = "amlit_checksum"
_UNSAFE = re.compile(r"GLOBAL ([\w.]+)")  # how torch names an object its weights-only loader refuses
_PLAIN = (bool, int, float, str, type(None))


def _on_cpu(storage, location):
    """``map_location`` that keeps tensors on the CPU, as Lightning's own loader does (a GPU checkpoint loads on a
    machine without one; Lightning moves the state to the device afterwards)."""
    return storage


def checkpoint_digest(checkpoint: Any) -> str:
    """SHA-256 over every tensor (dtype, shape, bytes) and plain value (bool/int/float/str/None) of a checkpoint,
    with the dict keys that lead to it, in a fixed order; ``amlit_checksum`` itself is left out.

    Computed from the objects, not the file bytes, so it can be stored inside the file and checked after a
    ``weights_only`` load. Other leaf types are skipped (a weights-only load cannot rebuild them anyway).
    """
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat = value.detach().reshape(-1).contiguous().cpu()
            digest.update(f"T{flat.dtype}{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy())  # raw bytes of any dtype (bf16 too), no copy
        elif isinstance(value, dict):
            items = sorted(((repr(k), v) for k, v in value.items() if k != CHECKSUM_KEY), key=lambda kv: kv[0])
            digest.update(f"D{len(items)}".encode())
            for key, item in items:
                digest.update(key.encode())
                feed(item)
        elif isinstance(value, list | tuple):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        elif type(value) in _PLAIN:
            digest.update(f"{type(value).__name__}:{value!r};".encode())

    feed(checkpoint)
    return digest.hexdigest()


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic, checksummed checkpoint writes; weights-only, verified loads (see the module docstring).

    Remote paths (``s3://`` ...) are written by Lightning's own code (object stores replace objects whole);
    the checksum and the load checks apply to them too.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        checkpoint[CHECKSUM_KEY] = {"sha256": checkpoint_digest(checkpoint)}
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path)
            return
        path = Path(path)
        existed = path.is_file()
        for stale in remove_stale_partials(path):
            rank_zero_warn(f"removed {stale}, an unfinished write of {path.name} by a process killed while saving")
        try:
            write_atomically(path, lambda file: torch.save(checkpoint, file), sync_folder=True)
        except Exception as error:
            # torch's zip writer reports a failed write as a RuntimeError about its position
            cause = cause_of(error, OSError)
            if cause is None:
                raise
            kept = f"the previous {path.name} is kept unchanged" if existed else f"no file was left at {path}"
            raise StorageError(
                f"could not write the checkpoint {path}: {cause.strerror or cause}; {kept}. "
                + ("Free some space (a write needs room for one more checkpoint) or " if _is_full(cause) else "")
                + "fix the folder, then resume with --ckpt_path last"
            ) from error

    def load_checkpoint(self, path, map_location: Any = _on_cpu, weights_only: bool | None = None) -> dict[str, Any]:
        # `weights_only` (the --weights_only flag) is deliberately not honoured: see _untrusted_message.
        return load_verified(path, map_location)


RESUME_REMEDY = "use an older checkpoint, or start a new run without --ckpt_path"
# What torch.save writes: a zip archive, or (before PyTorch 1.6, or _use_new_zipfile_serialization=False) a pickle
# (protocol 2: 0x80 0x02).
_TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")


def not_a_torch_file(head: bytes) -> str | None:
    """Why a file starting with ``head`` (its first bytes) cannot be one torch.save wrote, or None when it could be.
    Checked before ``torch.load``, whose weights-only error on e.g. a YAML config speaks of unsafe pickles."""
    if head.startswith(_TORCH_FILE_STARTS):
        return None
    if not head:
        return "it is empty (0 bytes)"
    try:
        first_line = head.decode("utf-8").splitlines()[0][:40]
    except (UnicodeDecodeError, IndexError):
        return f"it starts with the bytes {head[:8]!r}, not those of a file torch.save wrote (a zip archive)"
    return f"it is a text file (first line {first_line!r}), not a file torch.save wrote"


def load_verified(path, map_location: Any = _on_cpu, remedy: str = RESUME_REMEDY) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one clear ``UserInputError`` for a missing, unreadable,
    damaged (checksum mismatch) or code-carrying file, or one that is no checkpoint at all (a config); ``remedy``
    ends the message of the unreadable ones (what the option that named the file takes). A file without an amlit
    checksum loads with a warning."""
    filesystem = get_filesystem(path)
    if not filesystem.exists(str(path)):
        raise MissingDataError(f"checkpoint not found: {path}. Give the path of an existing .ckpt file")
    if filesystem.isdir(str(path)):  # e.g. a run folder: name the checkpoints in it rather than "damaged"
        found = sorted(str(file) for file in Path(path).rglob("*.ckpt")) if _is_local(path) else []
        inside = f"; it holds {listed(found)}" if found else "; it holds no .ckpt file"
        raise BadDataError(f"{path} is a folder, not a checkpoint file{inside}: give the path of one .ckpt file")
    try:
        with filesystem.open(str(path), "rb") as file:
            reason = not_a_torch_file(file.read(64))
            if reason is not None:
                raise BadDataError(f"{path} is not a checkpoint amlit can read: {reason}; {remedy}")
            file.seek(0)
            checkpoint = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # torch's weights-only loader refused an object, or a broken pickle
        if _UNSAFE.search(str(error)):
            raise BadDataError(_untrusted_message(path, str(error))) from None
        raise BadDataError(_unreadable_message(path, error, remedy)) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError, IndexError) as error:
        if isinstance(error, BadDataError):
            raise
        raise BadDataError(_unreadable_message(path, error, remedy)) from None
    missing = {"state_dict", "pytorch-lightning_version"} - set(checkpoint if isinstance(checkpoint, dict) else ())
    if missing:  # e.g. a bare state dict (.pth) of another project
        raise BadDataError(
            f"{path} is not a Lightning checkpoint (no {' or '.join(sorted(missing))}): give a .ckpt that amlit fit "
            "wrote"
        )
    stored = (checkpoint.get(CHECKSUM_KEY) or {}).get("sha256")
    if stored is None:
        rank_zero_warn(
            f"{path} has no amlit checksum (written by another tool or an older amlit): its integrity is not checked"
        )
    elif stored != checkpoint_digest(checkpoint):
        raise BadDataError(
            f"{path} is damaged: its contents no longer match the checksum amlit stored when writing it (a disk or "
            "copy error changed the file). Use an older checkpoint, or copy this one again from its source"
        )
    return checkpoint


def _unreadable_message(path, error: BaseException, remedy: str) -> str:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return (
        f"{path} cannot be read as a checkpoint ({reason}): it is truncated or damaged, e.g. by a write that "
        f"was cut short; {remedy}"
    )


def _untrusted_message(path, torch_message: str) -> str:
    found = _UNSAFE.search(torch_message)
    what = f" ({found.group(1)})" if found and found.group(1) else ""
    return (
        f"{path} was refused: besides weights it holds pickled Python objects{what}, which only loading with "
        "weights_only=false could rebuild, and that lets the file run any code it carries. amlit writes "
        "checkpoints that load as weights only, so amlit did not write this file as it is now; it is not loaded "
        "(whatever --weights_only says). Use a checkpoint that amlit wrote"
    )


def _is_local(path) -> bool:
    return "://" not in str(path)


def _is_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)
