"""Stop signals reach every process of a job, but only the main process can save: keep DataLoader workers alive
through them, and run SLURM's save-and-requeue signal between two training steps.

``timeout``, systemd, SLURM (``scancel``, preemption, ``--signal=SIGUSR1@90``) signal the whole process group or
job step, DataLoader workers included. torch's workers die of a SIGTERM that does not come from their parent, and
SIGUSR1's default action is to terminate: the main process then fails with "DataLoader worker ... is killed by
signal" in the middle of a step, before Lightning could save. ``worker_init`` makes a worker ignore both unless its
own parent sends SIGTERM (the DataLoader's shutdown); the main process then saves and shuts its workers down.
"""

from __future__ import annotations

import os
import signal
import threading

from lightning.fabric.utilities.seed import pl_worker_init_function

# SIGTERM: schedulers, `docker stop`, `timeout`; SIGUSR1: SLURM's warning before the time limit or a preemption.
# (POSIX only: sigwaitinfo is Linux's; elsewhere workers keep the default behaviour.)
SHIELDED = (signal.SIGTERM, signal.SIGUSR1) if hasattr(signal, "sigwaitinfo") else ()


def worker_init(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: shield this worker from the job's stop signals (see the module
    docstring), then seed it as Lightning does when ``seed_everything(workers=True)`` is in effect (LightningCLI
    seeds that way; a loader with its own ``worker_init_fn`` would otherwise lose Lightning's seeding)."""
    shield_worker_from_job_signals()
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)


def shield_worker_from_job_signals() -> None:
    """In a DataLoader worker: ignore SIGTERM and SIGUSR1 from anyone but the parent; the parent's SIGTERM (its
    ``terminate()`` of a worker that did not stop in time) still ends the worker at once, as torch intends.

    A Python handler cannot see the sender, so the signals are blocked in this thread (and in every thread started
    after it, which inherit the mask) and one daemon thread takes them with ``sigwaitinfo``, which tells the sender's
    PID. Call it first thing in the worker, before any thread starts.
    """
    if not SHIELDED:
        return
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, SHIELDED)

    def take_signals() -> None:
        while True:
            info = signal.sigwaitinfo(SHIELDED)
            if info.si_signo == signal.SIGTERM and info.si_pid == parent:
                os._exit(0)  # what torch's own worker SIGTERM handler does for its parent

    threading.Thread(target=take_signals, name="amlit-worker-signals", daemon=True).start()


class DeferredSignal:
    """Replaces the handler of ``signum`` with one that only notes the signal; ``run`` calls the original
    handler later, at a point where the training state is consistent (after an optimizer step).

    Lightning's SLURM handler for SIGUSR1 saves ``hpc_ckpt_<n>.ckpt`` and requeues the job *inside* the signal
    handler, that is wherever the main thread happens to be, possibly halfway through an optimizer step.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.original = signal.getsignal(signum)
        self.pending = False
        signal.signal(signum, self._note)

    def _note(self, signum, frame) -> None:
        self.pending = True

    def run(self) -> None:
        """Run the original handler now (the signal arrived: ``pending``, here or on another DDP rank)."""
        self.pending = False
        if callable(self.original):
            self.original(self.signum, None)

    def restore(self) -> None:
        if signal.getsignal(self.signum) == self._note:
            signal.signal(self.signum, self.original)
