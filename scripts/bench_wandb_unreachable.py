"""How long a wandb server that never answers delays the start of training, for a given ``init_timeout``.

    PYTHONPATH=. python scripts/bench_wandb_unreachable.py [--init-timeout 20] [--save-dir /tmp/bench_wandb]

A local socket accepts connections and never replies (a firewall that drops packets, a hung proxy);
``WANDB_BASE_URL`` points at it and a fake API key makes the logger choose online. Prints the seconds the logger's
first use takes (what Lightning does as ``fit`` starts) and the mode the run ended up in.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time


def silent_server() -> str:
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept() -> None:
        while True:
            held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init-timeout", type=float, default=20.0, help="the logger's init_timeout (config: 20)")
    parser.add_argument("--save-dir", default=None)
    args = parser.parse_args()
    for name in ("WANDB_MODE", "WANDB_DISABLED"):
        os.environ.pop(name, None)
    os.environ["WANDB_BASE_URL"] = silent_server()
    os.environ["WANDB_API_KEY"] = "k" * 40

    from amlit.loggers import WandbLogger

    logger = WandbLogger(init_timeout=args.init_timeout, save_dir=args.save_dir or tempfile.mkdtemp())
    started = time.monotonic()
    run = logger.experiment
    elapsed = time.monotonic() - started
    print(f"init_timeout {args.init_timeout:g} s: logger ready after {elapsed:.1f} s, mode {logger.mode}")
    run.finish()


if __name__ == "__main__":
    main()
