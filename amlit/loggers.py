"""Experiment tracking: a wandb logger that never blocks or crashes for lack of an API key or a network, and the
callback that puts the resolved config and the dataset manifest into every logger.

wandb 0.31 without help (measured): no key and no TTY -> ``UsageError`` after ~9 s; a key but no
network -> blocks ~100 s (``init_timeout`` 90 s), then ``CommError``. So the mode is chosen *before*
``wandb.init``: online only when the user asked for it or credentials are configured, offline otherwise; an online
start that fails within ``init_timeout`` falls back to offline, so the training run goes on either way.

``init_timeout`` bounds the whole online start, counted from the first use of the logger (Lightning's setup at the
start of ``fit``): wandb's own ``init_timeout`` covers only the run's creation, and before it wandb 0.31 spends two
more fixed 5 s requests looking up the account just to print "logged in as" (skipped with ``quiet``); a key with an
unreachable server was reported to delay the first step by 107-110 s with ``init_timeout: 20``. So a plain HTTP
request first checks, within the limit, that the server answers at all; then wandb gets the time that is left.
"""

from __future__ import annotations

import os
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from amlit.compat import wandb_netrc_has_key, wandb_settings
from amlit.errors import ConfigError

WandbMode = Literal["online", "offline", "disabled"]
MODES: tuple[str, ...] = ("online", "offline", "disabled")
# wandb's own spellings (``WANDB_MODE=dryrun``, ``run``) mapped to its three modes.
MODE_ALIASES = {"dryrun": "offline", "run": "online"}


OFFLINE_START_S = 2.0  # kept for an offline start after a failed online one (0.75-2.3 s measured on 2 busy cores)


def wandb_server_url() -> str:
    """The server wandb would talk to (``WANDB_BASE_URL``, settings, or its default)."""
    settings = wandb_settings()
    return str(settings.base_url) if settings is not None else os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def server_answers(url: str, timeout: float) -> bool:
    """Whether an HTTP server at ``url`` answers at all (any status) within ``timeout`` seconds, however slowly it
    trickles: the request runs in a daemon thread that is abandoned at the deadline."""
    answered = threading.Event()

    def probe() -> None:
        try:
            urllib.request.urlopen(url, timeout=max(timeout, 0.1)).close()
        except urllib.error.HTTPError:  # an error status is an answer
            pass
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ssl.SSLError):  # a TLS reply is one too (wandb may trust its cert)
                return
        except (OSError, ValueError):  # refused, unreachable, timed out, bad URL
            return
        answered.set()

    threading.Thread(target=probe, name="amlit-wandb-probe", daemon=True).start()
    return answered.wait(max(timeout, 0.0))


def has_wandb_credentials() -> bool:
    """Whether wandb would find credentials without prompting: ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``,
    or a netrc entry for the configured server (``wandb login`` writes one; ``NETRC`` / ``WANDB_BASE_URL``
    respected). Reads files only, never the network."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    # wandb's own lookup (same netrc path and host matching as wandb.init); an unreadable netrc or a changed wandb
    # internal behaves as "no key" (offline).
    settings = wandb_settings()
    return settings is not None and (bool(settings.api_key) or wandb_netrc_has_key(str(settings.base_url)))


def _normalized_mode(value: str, source: str) -> WandbMode:
    mode = MODE_ALIASES.get(value.strip().lower(), value.strip().lower())
    if mode not in MODES:
        raise ConfigError(f"{source}={value!r} is not a wandb mode: expected one of {', '.join(MODES)}")
    return mode  # type: ignore[return-value]


def resolve_mode(mode: str | None = None) -> tuple[WandbMode, str]:
    """Pick the wandb mode before ``wandb.init``; returns ``(mode, why)``.

    Order: an explicit ``mode`` argument; then ``WANDB_MODE`` (``dryrun`` = offline); then ``WANDB_DISABLED=true``;
    then online when credentials are configured (``has_wandb_credentials``); otherwise offline.
    """
    if mode is not None:
        return _normalized_mode(mode, "mode"), "set in the logger's mode"
    if env_mode := os.environ.get("WANDB_MODE"):
        return _normalized_mode(env_mode, "WANDB_MODE"), "set by WANDB_MODE"
    if os.environ.get("WANDB_DISABLED", "").strip().lower() in ("true", "1", "yes"):
        return "disabled", "set by WANDB_DISABLED"
    if has_wandb_credentials():
        return "online", "credentials found"
    return "offline", "no wandb API key configured (WANDB_API_KEY or `wandb login`)"


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` that picks its mode itself and never blocks a run (see ``resolve_mode``).

    Only rank 0 creates a wandb run (Lightning's ``rank_zero_experiment``); other ranks log nothing.
    Offline runs go to ``<save_dir>/wandb/offline-run-*`` and are uploaded later with ``wandb sync``.

    Args:
        project: wandb project.
        save_dir: folder of the ``wandb/`` run files (created if missing).
        name: display name of the run.
        version: run id, to resume a run (``id`` in wandb).
        mode: ``online``, ``offline`` or ``disabled``; ``None`` picks one: ``WANDB_MODE`` if set, else online when
            an API key is configured, else offline. Online without a key is offline, with a warning.
        offline: same as ``mode: offline`` (Lightning's spelling).
        init_timeout: seconds the online start may take, counted from the logger's first use (the start of
            ``fit``), before the run falls back to offline (wandb's own default is 90 s for one of its steps only).
        entity: wandb team or user.
        group: groups runs, e.g. those of a sweep or of the Table 1 rows.
        tags: run tags.
        notes: run description.
        job_type: wandb job type.
        log_model: upload checkpoints as artifacts (``True``, ``"all"``) when online.
        prefix: prefix of every metric key.
        **kwargs: further ``wandb.init`` arguments.
    """

    def __init__(
        self,
        project: str = "amlit",
        save_dir: str | Path | None = None,
        name: str | None = None,
        version: str | None = None,
        mode: WandbMode | None = None,
        offline: bool = False,
        init_timeout: float = 20.0,
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        job_type: str | None = None,
        log_model: Literal["all"] | bool = False,
        prefix: str = "",
        **kwargs: Any,
    ) -> None:
        self.mode, why = resolve_mode("offline" if offline and mode is None else mode)
        if self.mode == "online" and not has_wandb_credentials():
            # Asked for online, but wandb has no key to log in with: its start would only fail after init_timeout
            # (or prompt at a terminal), so say why now and go offline at once.
            rank_zero_warn(
                f"wandb: online ({why}) but no wandb API key is configured (set WANDB_API_KEY or run `wandb login`); "
                "logging offline instead"
            )
            self.mode, why = "offline", "no wandb API key configured"
        self.init_timeout = float(init_timeout)
        optional = {"entity": entity, "group": group, "tags": tags, "notes": notes, "job_type": job_type}
        super().__init__(
            name=name,
            save_dir=os.fspath(save_dir) if save_dir is not None else ".",
            version=version,
            project=project,
            log_model=log_model,
            prefix=prefix,
            mode=self.mode,  # passed to wandb.init; Lightning's own `offline` would rewrite os.environ
            **{key: value for key, value in optional.items() if value is not None},
            **kwargs,
        )
        if self._wandb_init.get("anonymous") is None:  # wandb 0.31 warns that the setting has no effect
            self._wandb_init.pop("anonymous", None)
        if self.mode == "offline":
            rank_zero_info(
                f"wandb: logging offline ({why}) to {Path(self._save_dir) / 'wandb'}; upload later with "
                f"`wandb sync {Path(self._save_dir) / 'wandb' / 'offline-run-*'}`"
            )
        elif self.mode == "disabled":
            rank_zero_info(f"wandb: disabled ({why})")

    def _init_settings(self, timeout: float) -> Any:
        import wandb

        # quiet: no "logged in as" line, whose account lookup costs two more network round trips (5 s each).
        return wandb.Settings(init_timeout=max(timeout, 0.5), quiet=True)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        deadline = time.monotonic() + self.init_timeout  # first use: the start of fit
        import wandb

        Path(self._save_dir).mkdir(parents=True, exist_ok=True)  # wandb falls back to /tmp when it is missing
        if self._wandb_init.get("mode") == "online":
            # Kept in hand for a failure: the offline start, and the ~0.5 s wandb takes to give up after its timeout.
            url, remaining = wandb_server_url(), deadline - time.monotonic()
            if not server_answers(url, max(remaining - OFFLINE_START_S, remaining / 2)):
                return self._start_offline(f"{url} did not answer within init_timeout={self.init_timeout:g} s")
            remaining = deadline - time.monotonic() - OFFLINE_START_S - 0.5
            self._wandb_init.setdefault("settings", self._init_settings(remaining))
        try:
            run = super().experiment
        except (wandb.errors.Error, TimeoutError) as error:
            if self._wandb_init.get("mode") != "online":
                raise
            return self._start_offline(f"{type(error).__name__}: {str(error).splitlines()[0]}")
        if self.mode == "online" and getattr(run, "url", None):
            rank_zero_info(f"wandb: logging online to {run.url}")  # wandb's own line is quiet now
        return run

    def _start_offline(self, why: str) -> Any:
        rank_zero_warn(
            f"wandb: online start failed ({why}); logging offline to {Path(self._save_dir) / 'wandb'} instead "
            "(upload later with `wandb sync`)"
        )
        self.mode = self._wandb_init["mode"] = "offline"
        self._wandb_init["settings"] = self._init_settings(self.init_timeout)
        return super().experiment

    @rank_zero_only  # other ranks have wandb's dummy run, without a folder
    def log_run_files(self, files: Mapping[str, Path]) -> None:
        """Copy files into the run (``files/<name>``): copies, because wandb's ``save`` would symlink a file that
        the next run overwrites (LightingCLI's ``config.yaml``)."""
        if self.mode == "disabled" or not files:
            return
        run_dir = Path(self.experiment.dir)
        for name, source in files.items():
            shutil.copyfile(source, run_dir / name)
            self.experiment.save(str(run_dir / name), base_path=str(run_dir), policy="now")


class CSVLogger(LightningCSVLogger):
    """Lightning's ``CSVLogger`` whose ``save_dir`` may be left unset: the CLI then puts it in the run folder
    (``trainer.default_root_dir``, see ``amlit.cli.place_outputs``); outside the CLI it is the current folder."""

    def __init__(
        self,
        save_dir: str | Path | None = None,
        name: str | None = "logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__(save_dir if save_dir is not None else ".", name, version, prefix, flush_logs_every_n_steps)


class SaveConfigToLoggers(SaveConfigCallback):
    """LightningCLI's config saver (``config.yaml`` in the log dir) that also hands every logger, on rank 0:

    - the resolved config as hyperparameters (``model.head.init_args.margin`` ...: the module's own
      ``save_hyperparameters`` leaves out the injected backbone and head);
    - the dataset manifest under ``data_manifest`` (``datamodule.manifest()``: classes, removed identities, ...);
    - ``config.yaml`` itself as a file of the wandb run.

    Written once the checkpoint of ``--ckpt_path`` is restored (at the start of fit/validate/test/predict, not at
    setup, which comes first): a run refused for its checkpoint (another head or model) keeps the run folder's
    ``config.yaml``, the record of how that checkpoint was trained, instead of replacing it with the refused config.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts from rank 0: read it on every rank here, never on rank 0 alone (a DDP hang).
        self._log_dir = trainer.log_dir

    def _save_once(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Called on every rank (SaveConfigCallback.setup broadcasts); it returns at once after the first call.
        super().setup(trainer, pl_module, trainer.state.fn)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save_once(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save_once(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save_once(trainer, pl_module)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save_once(trainer, pl_module)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "manifest"):
            config["data_manifest"] = datamodule.manifest()
        config_file = Path(self._log_dir or ".") / self.config_filename
        for logger in trainer.loggers:
            log_run_config(logger, config, config_file if self.save_to_log_dir else None)


def log_run_config(logger: Logger, config: dict[str, Any], config_file: Path | None) -> None:
    """Send one run's config (and its ``config.yaml``, if written) to a logger."""
    logger.log_hyperparams(config)
    if isinstance(logger, WandbLogger) and config_file is not None and config_file.is_file():
        logger.log_run_files({config_file.name: config_file})
