"""libjpeg's warnings about damaged JPEG data, caught per image.

OpenCV's JPEG decoder (libjpeg-turbo) decodes a JPEG whose compressed data is damaged (bytes overwritten in the
middle, the end marker intact) and only prints a warning such as "Corrupt JPEG data: premature end of data segment"
on the process's stderr, naming no file, while it fills the damaged part with guessed pixels. OpenCV offers no hook
for these messages, so ``decode_jpeg`` points file descriptor 2 at a pipe while OpenCV decodes, reads what libjpeg
wrote, and passes every byte on to the real stderr (nothing is lost or reordered within a stream). The caller then
knows which image the warning was about. It finds only the damage libjpeg reports: bytes overwritten in a smooth
image often decode as valid codes without any warning. Cost: a few system calls per image (measured ~5 us next to
~75 us for decoding a 112x96 face), so it runs on every decode, training included.

Who reads the pipe: the decoding thread itself, right after its decode (libjpeg's warning was written before
``imdecode`` returned, so it is in the pipe then), and a forwarding thread that wakes whenever the pipe holds data.
The forwarding thread is what keeps other threads' stderr flowing: a thread that started a large write while fd 2
pointed at the pipe keeps writing into it after fd 2 is restored, and would block forever once the pipe is full if
nobody read it; what such a write left in the pipe is drained once more at exit. Every read is processed under one
lock, so the order of the bytes is kept whoever reads them.

Threads (the decoding pools of ``amlit embed`` and ``amlit data align``) share one redirection: fd 2 points at the
pipe while any thread decodes. A damage warning read while other threads decoded too may be theirs: that image is
decoded once more alone (the others wait), which settles whose it was; damaged images are rare, so this is rare.
"""

from __future__ import annotations

import atexit
import os
import re
import select
import threading

import cv2
import numpy as np

# libjpeg's (jerror.h) messages for damaged data: JWRN_HIT_MARKER, JWRN_EXTRANEOUS_DATA, JWRN_MUST_RESYNC,
# JWRN_HUFF_BAD_CODE, JWRN_ARITH_BAD_CODE ("Corrupt JPEG data: ..."), JWRN_JPEG_EOF ("Premature end of JPEG file").
# libjpeg prints the first warning of an image only. "N extraneous bytes before marker 0xd9" is damage too, though
# some writers' padding before the end marker gives it as well: bytes overwritten mid-file can decode as valid codes
# that end the image early (measured: 55% of a face's pixels wrong, and this message the only one), and libjpeg
# cannot tell the two apart, so neither can we (see ``PADDING_OR_DAMAGE``).
DAMAGE_MESSAGES = (b"Corrupt JPEG data", b"Premature end of JPEG file")
PADDING_OR_DAMAGE = re.compile(r"extraneous bytes before marker 0xd9")
_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_stderr() -> None:
    """Point fd 2 at /dev/null when the process was started with it closed (``2>&-``): otherwise ``os.pipe`` would
    hand out fd 2 itself, and redirecting fd 2 would close the pipe's own end."""
    try:
        os.fstat(2)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != 2:
            os.dup2(devnull, 2)
            os.close(devnull)


class _StderrPipe:
    """One process's redirection of fd 2 during decodes (see the module docstring). ``condition`` guards every
    field; ``decode`` is the only entry."""

    def __init__(self) -> None:
        _open_stderr()
        self.pid = os.getpid()
        self.condition = threading.Condition()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.saved: int | None = None  # the real stderr while redirected
        self.active = 0  # decodes running
        self.exclusive = False  # one decode running alone
        self.repeating = False  # that decode's damage message was passed on once already: do not repeat it
        self.started = 0  # decodes started so far: one that saw no other start ran alone
        self.damage_seen = 0  # damage messages read so far
        self.last_message = ""
        threading.Thread(target=self._forward, name="amlit-jpeg-stderr", daemon=True).start()

    def _forward(self) -> None:
        poll = select.poll()
        poll.register(self.read_fd, select.POLLIN)
        while True:
            poll.poll()
            with self.condition:
                self._drain()

    def _redirect(self) -> None:
        self.saved = os.dup(2)
        os.dup2(self.write_fd, 2)

    def _drain(self) -> None:
        """Pass what the pipe holds on to the real stderr (fd 2 itself once restored), counting libjpeg's damage
        messages. Called with ``condition`` held."""
        while True:
            try:
                data = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                return
            lines = data.splitlines(keepends=True)
            damage = [any(message in line for message in DAMAGE_MESSAGES) for line in lines]
            for line in (line for line, is_damaged in zip(lines, damage, strict=True) if is_damaged):
                self.damage_seen += 1
                self.last_message = line.decode(errors="replace").strip()
            if self.repeating and any(damage):
                data = b"".join(line for line, is_damaged in zip(lines, damage, strict=True) if not is_damaged)
            _write_all(2 if self.saved is None else self.saved, data)

    def _restore(self) -> None:
        os.dup2(self.saved, 2)  # first: what other threads write from now on goes straight to the real stderr
        self._drain()
        os.close(self.saved)
        self.saved = None

    def decode(self, data: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        with self.condition:
            while self.exclusive:
                self.condition.wait()
            alone = self.active == 0
            if alone:
                self._redirect()
            else:
                self._drain()  # what the others wrote so far is theirs
            self.active += 1
            self.started += 1
            started, damage_before = self.started, self.damage_seen
        try:
            image = cv2.imdecode(data, _FLAGS)
        finally:
            with self.condition:
                self._drain()
                alone = alone and self.started == started
                damaged = self.damage_seen > damage_before
                message = self.last_message
                self.active -= 1
                if self.active == 0:
                    self._restore()
                    self.condition.notify_all()
        if damaged and not alone:
            return self._decode_alone(data)
        return image, message if damaged else None

    def _decode_alone(self, data: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        with self.condition:
            while self.active or self.exclusive:
                self.condition.wait()
            self.exclusive = self.repeating = True
            self._redirect()
            damage_before = self.damage_seen
        try:
            image = cv2.imdecode(data, _FLAGS)
        finally:
            with self.condition:
                self._restore()
                damaged = self.damage_seen > damage_before
                message = self.last_message
                self.exclusive = self.repeating = False
                self.condition.notify_all()
        return image, message if damaged else None


_pipe: _StderrPipe | None = None
_pipe_lock = threading.Lock()


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) makes its own pipe and forwarding thread (threads do not survive a
    fork); a lock held by another thread at the fork would never be released in the child."""
    global _pipe, _pipe_lock
    _pipe, _pipe_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def _drain_at_exit() -> None:
    """Pass on what is still in the pipe when the interpreter exits: a write another thread started while fd 2
    pointed at the pipe can finish after the last decode, and the forwarding thread, a daemon, ends with the
    interpreter (the last <= 64 KB of such a write were lost)."""
    pipe = _pipe
    if pipe is not None and pipe.pid == os.getpid():
        with pipe.condition:
            pipe._drain()


atexit.register(_drain_at_exit)


def decode_jpeg(data: bytes) -> tuple[np.ndarray | None, str | None]:
    """``cv2.imdecode`` of JPEG bytes (BGR, EXIF orientation ignored) and libjpeg's damage warning for them, if it
    gave one (e.g. ``"Corrupt JPEG data: premature end of data segment"``); the image is None when OpenCV cannot
    decode it at all."""
    global _pipe
    if _pipe is None:
        with _pipe_lock:
            if _pipe is None:
                _pipe = _StderrPipe()
    return _pipe.decode(np.frombuffer(data, dtype=np.uint8))
