"""wandb logger: mode selection without network, fallback to offline, and what an offline run records."""

import socket
import threading
import time

import pytest
import yaml
from conftest import REPO
from test_cli import overrides
from wandb_records import read_run

import amlit.loggers
from amlit import keys
from amlit.cli import run_cli
from amlit.errors import ConfigError
from amlit.loggers import WandbLogger, has_wandb_credentials, resolve_mode

WANDB_ENV = ("WANDB_MODE", "WANDB_DISABLED", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE")


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    """No wandb variables and an empty netrc: what a fresh machine without `wandb login` looks like."""
    for name in WANDB_ENV:
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_no_key_means_offline(no_wandb_env):
    assert not has_wandb_credentials()
    mode, why = resolve_mode()
    assert mode == "offline" and "no wandb API key" in why


def test_api_key_or_netrc_entry_means_online(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode()[0] == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    from wandb.sdk import wandb_setup

    host = wandb_setup.singleton().settings.base_url.split("://", 1)[1]
    no_wandb_env.write_text(f"machine {host}\n  login user\n  password {'p' * 40}\n")
    assert resolve_mode()[0] == "online"


def test_explicit_settings_are_respected(no_wandb_env, monkeypatch):
    assert resolve_mode("online")[0] == "online"  # even without a key: the user asked for it
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode()[0] == "disabled"
    assert resolve_mode("offline")[0] == "offline"  # the logger's own setting beats the environment
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # wandb's old name of offline
    assert resolve_mode()[0] == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_mode()[0] == "offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_DISABLED", "true")
    assert resolve_mode()[0] == "disabled"
    monkeypatch.setenv("WANDB_MODE", "cloud")
    with pytest.raises(ConfigError, match="WANDB_MODE='cloud' is not a wandb mode"):
        resolve_mode()
    assert WandbLogger(offline=True, save_dir=no_wandb_env.parent).mode == "offline"


def test_failed_online_start_falls_back_to_offline(no_wandb_env, monkeypatch, tmp_path):
    import wandb

    calls = []

    def fake_init(**kwargs):
        calls.append((kwargs["mode"], kwargs["settings"].init_timeout))
        if kwargs["mode"] == "online":
            raise wandb.errors.CommError("Timed out while retrying")
        return "offline run"

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(wandb, "run", None)  # Lightning would reuse a run left by an earlier in-process test
    monkeypatch.setattr(amlit.loggers, "server_answers", lambda url, timeout: True)  # it answers, then fails
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    logger = WandbLogger(mode="online", init_timeout=4, save_dir=tmp_path / "runs")
    assert logger.experiment == "offline run"
    (online, online_timeout), (offline, offline_timeout) = calls
    assert (online, offline, offline_timeout) == ("online", "offline", 4.0)
    # what is left of 4 s, less the offline start and the ~0.5 s wandb takes to give up after its timeout
    assert 1.0 < online_timeout <= 1.5
    assert logger.mode == "offline" and (tmp_path / "runs").is_dir()


def test_online_without_a_key_goes_offline_at_once_saying_why(no_wandb_env, monkeypatch, tmp_path):
    import wandb

    def unexpected(*args, **kwargs):
        raise AssertionError("no server to ask: there is no key to log in with")

    monkeypatch.setattr(amlit.loggers, "server_answers", unexpected)
    monkeypatch.setattr(wandb, "init", lambda **kwargs: kwargs["mode"])
    monkeypatch.setattr(wandb, "run", None)
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.warns(UserWarning, match=r"online \(set by WANDB_MODE\) but no wandb API key is configured \(set WAN"):
        logger = WandbLogger(save_dir=tmp_path)
    assert logger.mode == "offline" and logger.experiment == "offline"


@pytest.mark.slow  # ~4 s: wandb-core start-up
def test_offline_fit_records_config_manifest_metrics_and_config_file(tiny_tree, tmp_path, monkeypatch):
    import wandb

    wandb.finish()  # Lightning reuses a run left open by an earlier in-process test (e.g. a disabled one)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    # The demo config (narrow network: fast on CPU) carries the same wandb + CSV loggers as the paper's.
    args = ["--config", str(REPO / "configs" / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    cli = run_cli(
        [
            "fit",
            *args,
            "--model.head.margin=0.3",
            "--model.head.scale=16",
            "--trainer.max_steps=2",
            "--trainer.log_every_n_steps=1",
            "--trainer.num_sanity_val_steps=0",
        ]
    )
    cli.trainer.loggers[0].experiment.finish()  # flush the run file, as the end of the process would
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")  # the run folder holds wandb's files
    run = read_run(run_file)

    head = run["config"]["model"]["head"]["init_args"]
    assert (head["margin"], head["scale"]) == (0.3, 16.0)
    manifest = run["config"]["data_manifest"]
    assert manifest["num_classes"] == cli.datamodule.num_classes == 12 - 4  # 4 held out for validation
    assert manifest["train_images"] == len(cli.datamodule.train_table)
    logged = [row for row in run["history"] if keys.TRAIN_LOSS in row]
    assert len(logged) >= 1 and all(row[keys.TRAIN_LOSS] > 0 for row in logged)
    assert keys.TRAIN_MARGIN_VIOLATION in logged[0] and keys.TRAIN_WEIGHT_NORM_MEAN in logged[0]
    # config.yaml travels as a copy (not a link to runs/.../config.yaml, which the next run overwrites).
    assert "config.yaml" in run["files"]
    saved = run_file.parent / "files" / "config.yaml"
    assert not saved.is_symlink()
    assert yaml.safe_load(saved.read_text())["model"]["head"]["init_args"]["margin"] == 0.3


@pytest.fixture
def silent_server():
    """A local TCP server that accepts every connection and never answers (a firewall that drops, a hung proxy)."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in held:
        connection.close()


@pytest.mark.slow  # ~3 s by design (the bound), plus wandb-core start-up
def test_unreachable_server_delays_the_start_by_at_most_init_timeout(
    no_wandb_env, monkeypatch, tmp_path, silent_server
):
    import wandb

    wandb.finish()  # no run left open by an earlier in-process test
    monkeypatch.setenv("WANDB_BASE_URL", silent_server)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # a key: online is chosen, and the server never answers
    limit = 3.0
    logger = WandbLogger(init_timeout=limit, save_dir=tmp_path)
    assert logger.mode == "online"
    started = time.monotonic()
    run = logger.experiment  # what Lightning does as fit starts
    elapsed = time.monotonic() - started
    try:
        assert logger.mode == "offline" and run.settings.mode == "offline"
        # the limit, plus the offline start that follows it (local only: ~0.5 s here)
        assert elapsed < limit + 2.0, f"the wandb start took {elapsed:.1f} s with init_timeout={limit}"
        assert list((tmp_path / "wandb").glob("offline-run-*"))
    finally:
        run.finish()
