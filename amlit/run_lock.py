"""One ``amlit fit`` per run folder: two runs writing into the same folders overwrite each other's ``last.ckpt`` and
``config.yaml`` without a word, so the second one is refused, naming the first one's PID.

The lock is an exclusive ``flock`` on ``<folder>/.amlit-fit.lock``, held for the whole ``fit``. The kernel (or the
NFS lock manager) drops it when its process ends in any way, ``kill -9`` included, so a lock is never stale; the
file's text (PID, host, start time, command) only serves the refusal message. Only global rank 0 takes it (the CLI
calls ``RunLock.acquire`` before Lightning starts the other DDP processes). A filesystem without ``flock`` (some
Lustre mounts) gets a warning instead of a lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from amlit.errors import UserInputError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs go unlocked, with a warning
    fcntl = None

LOCK_FILE = ".amlit-fit.lock"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunFolderBusyError(UserInputError):
    """Another ``amlit fit`` holds a folder this run would write into."""


class RunLock(L.Callback):
    """Exclusive hold on a run's output folders for one process; released at the end of ``fit`` (or on its
    exception), or by the kernel when the process dies. A Lightning callback only so that it is released when
    ``fit`` ends, however it ends."""

    def __init__(self, files: list[IO[str]]) -> None:
        self._files = files

    @classmethod
    def acquire(cls, folders: Iterable[str | Path]) -> RunLock:
        """Lock each folder (created if missing), or raise ``RunFolderBusyError`` naming the holder."""
        files: list[IO[str]] = []
        try:
            for folder in sorted({Path(f).resolve() for f in folders}):
                folder.mkdir(parents=True, exist_ok=True)
                file = _lock(folder / LOCK_FILE)
                if file is not None:
                    files.append(file)
        except BaseException:
            cls(files).release()
            raise
        return cls(files)

    def release(self) -> None:
        # The file stays: removing it would let a process that opened it just before lock a deleted inode.
        for file in self._files:
            with contextlib.suppress(OSError):
                fcntl.flock(file, fcntl.LOCK_UN)
            file.close()
        self._files = []

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.release()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.release()


def _lock(path: Path) -> IO[str] | None:
    if fcntl is None:
        rank_zero_warn(f"cannot take {path} (no flock on this system): make sure no other amlit fit writes there")
        return None
    file = open(path, "a+")  # noqa: SIM115 (kept open while locked)
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read()
        file.close()
        raise RunFolderBusyError(_busy_message(path.parent, holder)) from None
    except OSError as error:
        file.close()
        if error.errno not in _NO_FLOCK:
            raise
        rank_zero_warn(
            f"cannot take {path} (the filesystem does not support flock): make sure no other amlit fit writes into "
            "the same folder"
        )
        return None
    file.seek(0)
    file.truncate()
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
    }
    file.write(json.dumps(holder) + "\n")
    file.flush()
    return file


def _busy_message(folder: Path, holder_text: str) -> str:
    try:
        holder = json.loads(holder_text)
        command = holder["command"] if len(holder["command"]) < 200 else holder["command"][:200] + "..."
        who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {command}"
    except (ValueError, KeyError, TypeError):
        who = "its PID is not recorded yet"
    return (
        f"{folder} is in use by another amlit fit ({who}); two runs in one folder overwrite each other's "
        "last.ckpt and config.yaml. Wait for that run to end or stop it, or give this run its own folder "
        "(trainer.default_root_dir, the ModelCheckpoint dirpath and the loggers' save_dir)"
    )
