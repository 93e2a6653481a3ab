"""Faults lose no work (issue #16): full disks, damaged and untrusted checkpoints, what --ckpt_path last resumes, one
run per folder, the NaN guard's advice and config errors. Each test asserts what was kept. The signal and kill -9
tests, which need training runs, are in test_training.py."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from test_cli import CONFIGS
from training_helpers import callbacks_config, demo_args

from amlit.callbacks import NonFiniteGuard
from amlit.checkpoint_io import CHECKSUM_KEY, SafeCheckpointIO, load_verified
from amlit.cli import main, run_cli
from amlit.errors import BadDataError, ConfigError, MissingDataError, StorageError
from amlit.resume import resolve_ckpt_path
from amlit.run_lock import RunFolderBusyError, RunLock


def fake_checkpoint(step: int, rows: int = 128) -> dict:
    """A checkpoint-shaped dict: weights (one large tensor), optimizer state and plain values."""
    generator = torch.Generator().manual_seed(step)
    weight = torch.randn(rows, 512, generator=generator)  # 256 KiB, and as much of momentum: the bulk of the file
    return {
        "pytorch-lightning_version": "2.6.6",
        "global_step": step,
        "state_dict": {"head.weight": weight, "backbone.bias": torch.zeros(7, dtype=torch.bfloat16)},
        "optimizer_states": [{"state": {0: {"momentum_buffer": weight * 0.5}}, "param_groups": [{"lr": 0.1}]}],
        "hyper_parameters": {"learning_rate": 0.1, "lr_milestones": [16_000, 24_000]},
    }


def amlit_main(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run the ``amlit`` console entry point in-process: (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", ["amlit", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


# ---- 1. a full disk never destroys the last good checkpoint -------------------------------------------------------
def write_part_then_fail(real_save):
    """A ``torch.save`` that writes the first calls' checkpoints, then starts writing and hits a full disk."""
    calls = []

    def save(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return real_save(obj, file, *args, **kwargs)
        file.write(b"PK\x03\x04" + b"\0" * 4096)  # a zip that was cut short
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return save


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (a full disk for real) where mounting is allowed (root), else None (a failing writer then)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]
    mounted = shutil.which("mount") is not None and subprocess.run(command, capture_output=True).returncode == 0
    yield folder if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_full_disk_keeps_the_previous_checkpoint_whole(small_disk, tmp_path, monkeypatch):
    io = SafeCheckpointIO()
    folder = small_disk or tmp_path / "checkpoints"
    path = folder / "last.ckpt"
    if small_disk is None:  # no tmpfs: the disk fills up in the middle of the second write
        monkeypatch.setattr(torch, "save", write_part_then_fail(torch.save))
    io.save_checkpoint(fake_checkpoint(1), path)  # ~0.5 MiB on the 1 MiB disk
    # ~1.2 MiB: more than the disk even without the old file. Lightning's own TorchCheckpointIO (2.6) writes it to
    # /tmp, then copies it over last.ckpt here, and leaves a truncated file that no longer loads.
    with pytest.raises(StorageError, match=r"No space left on device; the previous last\.ckpt is kept unchanged"):
        io.save_checkpoint(fake_checkpoint(2, rows=300), path)
    kept = load_verified(path)  # whole, and its checksum matches
    assert kept["global_step"] == 1
    torch.testing.assert_close(kept["state_dict"]["head.weight"], fake_checkpoint(1)["state_dict"]["head.weight"])
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]  # no partial file left behind


def test_a_first_write_that_fails_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", write_part_then_fail(lambda *a, **k: None))
    SafeCheckpointIO().save_checkpoint(fake_checkpoint(0), tmp_path / "warm-up.ckpt")  # the one call that passes
    with pytest.raises(StorageError, match="no file was left at"):
        SafeCheckpointIO().save_checkpoint(fake_checkpoint(1), tmp_path / "last.ckpt")
    assert not (tmp_path / "last.ckpt").exists() and not list(tmp_path.glob(".*partial"))


def test_a_save_removes_what_a_killed_save_of_that_checkpoint_left_and_nothing_else(tmp_path):
    """kill -9 (an OOM kill, a preemption past its grace period) during a save leaves the hidden temporary file,
    a whole checkpoint's worth of disk each time; the next save of that checkpoint removes those of dead processes."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # a process that has ended
    stale = tmp_path / f".last.ckpt.{dead_pid}-0123abcd.partial"
    live = tmp_path / f".last.ckpt.{os.getppid()}-4567ef01.partial"  # a running process's: left alone
    other = tmp_path / f".epoch=1.ckpt.{dead_pid}-89abcdef.partial"  # another checkpoint's: its own save's business
    for path in (stale, live, other):
        path.write_bytes(b"\0" * 1000)
    with pytest.warns(UserWarning, match=r"removed .*\.last\.ckpt\.\d+-0123abcd\.partial, an unfinished write"):
        SafeCheckpointIO().save_checkpoint(fake_checkpoint(0), tmp_path / "last.ckpt")
    assert not stale.exists() and live.exists() and other.exists()
    assert load_verified(tmp_path / "last.ckpt")["global_step"] == 0


@pytest.mark.slow
def test_fit_stops_with_one_message_when_the_disk_fills_and_keeps_last_ckpt(
    tiny_tree, tmp_path, data_root, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "save", write_part_then_fail(torch.save))
    cfg = callbacks_config(tmp_path, every_n_train_steps=1)
    args = ["fit", *demo_args(tiny_tree, tmp_path, data_root, "--trainer.max_steps=4"), "--config", str(cfg)]
    status, stderr = amlit_main(args, monkeypatch, capsys)
    assert status == 2 and "Traceback" not in stderr and stderr.count("amlit: error:") == 1
    last_line = stderr.rstrip().splitlines()[-1]
    assert "No space left on device; the previous last.ckpt is kept" in last_line, stderr
    assert load_verified(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 1  # the step-1 save


# ---- 3. every shipped config checkpoints during fit; --ckpt_path last never silently starts over ------------------
@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_saves_periodically_during_fit(config):
    callbacks = yaml.safe_load((CONFIGS / config).read_text())["trainer"]["callbacks"]
    savers = [c["init_args"] for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]
    # dirpath is left unset on purpose: place_outputs puts it in the run folder (trainer.default_root_dir)
    assert savers and all(s["save_last"] and s.get("dirpath") is None for s in savers)
    assert all(s.get("every_n_train_steps") or s.get("train_time_interval") for s in savers)
    assert any(c["class_path"] == "amlit.callbacks.CheckpointOnSigterm" for c in callbacks)


def test_which_checkpoint_last_last_or_new_and_a_requeued_slurm_job_resume(tmp_path, monkeypatch):
    folder, root = tmp_path / "checkpoints", tmp_path / "root"
    trainer = type("T", (), {"checkpoint_callbacks": [ModelCheckpoint(dirpath=folder, save_last=True)]})()
    trainer.default_root_dir = str(root)
    for name in ("SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        resolve_ckpt_path(trainer, "last")
    assert resolve_ckpt_path(trainer, "last_or_new") is None
    for path, age in ((folder / "last.ckpt", 20), (root / "hpc_ckpt_1.ckpt", 10)):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
        os.utime(path, (time.time() - age, time.time() - age))
    assert resolve_ckpt_path(trainer, "last") == str(root / "hpc_ckpt_1.ckpt")  # the newest
    assert resolve_ckpt_path(trainer, None) is None  # a new run (it warns that last.ckpt will be overwritten)
    monkeypatch.setenv("SLURM_NTASKS", "1")  # a SLURM job ...
    monkeypatch.setenv("SLURM_JOB_NAME", "amlit")
    assert resolve_ckpt_path(trainer, None) is None  # ... its first start: Lightning's own hpc rule applies
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # ... requeued: continues, never starts over
    os.utime(folder / "last.ckpt")
    assert resolve_ckpt_path(trainer, None) == str(folder / "last.ckpt")
    assert resolve_ckpt_path(trainer, "other.ckpt") == "other.ckpt"


def test_ckpt_path_last_without_a_checkpoint_is_an_error_unless_asked(tiny_tree, tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*demo_args(tiny_tree, tmp_path, data_root), "--config", str(callbacks_config(tmp_path))]
    with pytest.raises(ConfigError, match=r"no checkpoint to resume in .*checkpoints .*--ckpt_path last_or_new"):
        run_cli(["fit", *args, "--ckpt_path=last"])
    with pytest.raises(ConfigError, match=r"no checkpoint in .*checkpoints .*give the path of the one to evaluate"):
        run_cli(["test", *args, "--ckpt_path=last"])  # not an untrained model's scores
    cli = run_cli(["fit", *args, "--ckpt_path=last_or_new", "--trainer.max_steps=1"])  # asked for: a new run
    assert cli.trainer.global_step == 1 and cli.trainer.ckpt_path is None


# ---- 4. resume obeys changed settings; the NaN guard promises no checkpoint it does not have -----------------------
def test_nan_guard_names_the_newest_checkpoint_or_says_there_is_none(tmp_path):
    saver = type("Saver", (), {"last_model_path": "", "best_model_path": ""})()
    trainer = type("T", (), {"global_step": 3, "ckpt_path": None, "checkpoint_callbacks": [saver]})()
    message = NonFiniteGuard._message(trainer, "stopped")
    assert "No checkpoint was written before that step" in message and "intact" not in message
    saver.last_model_path = str(tmp_path / "last.ckpt")
    (tmp_path / "last.ckpt").write_bytes(b"x")
    assert f"The newest checkpoint of this run, {tmp_path / 'last.ckpt'}, was written" in NonFiniteGuard._message(
        trainer, "stopped"
    )


# ---- 5. a damaged checkpoint is detected: one line, exit 2 --------------------------------------------------------
def flip_bytes_inside_the_largest_tensor(path: Path, count: int = 4096) -> None:
    with zipfile.ZipFile(path) as archive:  # torch.save writes an uncompressed zip: one record per tensor storage
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as file:
        file.seek(record.header_offset + 26)
        name_length, extra_length = (int.from_bytes(file.read(2), "little") for _ in range(2))
        start = record.header_offset + 30 + name_length + extra_length + record.file_size // 2
        file.seek(start)
        flipped = bytes(b ^ 0xFF for b in file.read(count))
        file.seek(start)
        file.write(flipped)


def test_damaged_truncated_and_missing_checkpoints_are_refused(tmp_path):
    path = tmp_path / "last.ckpt"
    SafeCheckpointIO().save_checkpoint(fake_checkpoint(5), path)
    assert load_verified(path)[CHECKSUM_KEY]["sha256"]
    flip_bytes_inside_the_largest_tensor(path)
    assert torch.load(path, weights_only=True)["global_step"] == 5  # torch itself notices nothing
    with pytest.raises(BadDataError, match="is damaged: its contents no longer match the checksum"):
        load_verified(path)
    SafeCheckpointIO().save_checkpoint(fake_checkpoint(5), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy cut short
    with pytest.raises(BadDataError, match=r"cannot be read as a checkpoint .*truncated or damaged"):
        load_verified(path)
    with pytest.raises(MissingDataError, match="checkpoint not found"):
        load_verified(tmp_path / "nope.ckpt")
    torch.save({"head.weight": torch.zeros(2)}, path)  # a bare state dict, e.g. another project's .pth
    with pytest.raises(BadDataError, match="is not a Lightning checkpoint"):
        load_verified(path)
    # a run folder given for the file: named as a folder, with the checkpoints it holds
    with pytest.raises(BadDataError, match=rf"{tmp_path} is a folder, not a checkpoint file; it holds {path}: give"):
        load_verified(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadDataError, match=r"is a folder, not a checkpoint file; it holds no \.ckpt file"):
        load_verified(tmp_path / "empty")


def test_amlit_test_with_a_truncated_checkpoint_prints_one_line(tiny_tree, tmp_path, monkeypatch, capsys):
    from test_cli import overrides

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "last.ckpt"
    SafeCheckpointIO().save_checkpoint(fake_checkpoint(5), path)
    path.write_bytes(path.read_bytes()[:1000])
    args = ["test", "--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    status, stderr = amlit_main([*args, f"--ckpt_path={path}"], monkeypatch, capsys)
    assert status == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert stderr.startswith(f"amlit: error: {path} cannot be read as a checkpoint")


def test_a_checkpoint_of_another_model_is_refused_with_the_settings_to_check(tiny_tree, tmp_path, monkeypatch):
    from test_cli import overrides

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "other.ckpt"
    SafeCheckpointIO().save_checkpoint({**fake_checkpoint(1), "state_dict": {"head.weight": torch.zeros(3, 128)}}, path)
    args = ["test", "--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    with pytest.raises(ConfigError, match=r"does not fit this model \(checkpoint vs model: head.weight \(3, 128\) vs"):
        run_cli([*args, f"--ckpt_path={path}"])


@pytest.mark.slow
def test_a_checkpoint_is_tested_and_resumed_only_with_its_head_and_a_refused_run_keeps_the_runs_config(
    tiny_tree, tmp_path, data_root, monkeypatch, capsys
):
    """ArcFace and AM-Softmax checkpoints hold the same weights: only the recorded config tells which head trained,
    and results recorded under the config's head would file an ArcFace run in the paper's AM-Softmax row."""
    monkeypatch.chdir(tmp_path)
    args = [*demo_args(tiny_tree, tmp_path, data_root), "--config", str(callbacks_config(tmp_path))]
    arcface = ["--config", str(CONFIGS / "heads" / "arcface.yaml")]
    run_cli(["fit", *args, *arcface, "--trainer.max_steps=2"])
    (config_file,) = [path for path in tmp_path.glob("**/config.yaml") if "wandb" not in path.parts]
    recorded = config_file.read_bytes()
    capsys.readouterr()

    status, stderr = amlit_main(["test", *args, "--ckpt_path=last"], monkeypatch, capsys)
    assert status == 2 and "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1].startswith(  # one line (after wandb's warnings, when another test left a run)
        "amlit: error: the checkpoint was trained with the head ArcFace(margin=0.5, scale=64.0, easy_margin=False), "
        "this config has AMSoftmax(margin=0.35, scale=30.0, "
    )
    assert config_file.read_bytes() == recorded  # still says how the checkpoint was trained, as the message advises
    status, stderr = amlit_main(["fit", *args, "--trainer.max_steps=3", "--ckpt_path=last"], monkeypatch, capsys)
    assert status == 2 and "a run cannot change its head class mid-way" in stderr, stderr
    assert config_file.read_bytes() == recorded

    said = []
    monkeypatch.setattr("amlit.module.rank_zero_info", said.append)
    cli = run_cli(["fit", *args, *arcface, "--model.head.margin=0.3", "--trainer.max_steps=3", "--ckpt_path=last"])
    assert said == ["resumed with changed head settings, applied from step 2: model.head.margin 0.5 -> 0.3"]
    assert cli.trainer.global_step == 3 and cli.model.head.margin == 0.3


# ---- 6. untrusted checkpoints stay inert ---------------------------------------------------------------------------
class Payload:
    """Pickles as a call of os.system: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_carrying_code_is_refused_even_with_weights_only_false(
    tiny_tree, tmp_path, data_root, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "last.ckpt"
    torch.save({**fake_checkpoint(1), "callbacks": {"x": Payload(marker)}}, evil)
    args = ["fit", *demo_args(tiny_tree, tmp_path, data_root), "--config", str(callbacks_config(tmp_path))]
    for flag in ([], ["--weights_only=false"]):
        with pytest.raises(BadDataError) as info:
            run_cli([*args, f"--ckpt_path={evil}", *flag])
        message = str(info.value)
        assert "holds pickled Python objects (posix.system)" in message and "amlit did not write" in message
        assert "weights_only=false could rebuild, and that lets the file run any code" in message  # what it means
        assert "will likely succeed" not in message and "Re-running" not in message  # torch's advice is not passed on
    assert not marker.exists()


# ---- 8. one fit per run folder --------------------------------------------------------------------------------------
def test_run_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    first = RunLock.acquire([tmp_path / "run", tmp_path / "run" / "checkpoints"])
    with pytest.raises(RunFolderBusyError, match=f"run is in use by another amlit fit \\(pid {os.getpid()} on "):
        RunLock.acquire([tmp_path / "run"])
    first.release()
    RunLock.acquire([tmp_path / "run"]).release()  # free again


# ---- 9. config errors: one short message, before any process starts -----------------------------------------------
def test_config_errors_print_one_short_message(tiny_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer:\n  max_steps: [1\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("trainer:\n  max_stepz: 3\n")
    demo = ["fit", "--config", str(CONFIGS / "demo.yaml")]
    cases = {
        f"{broken}: line 3, column 1: YAML syntax error": ["--config", str(broken)],
        "does not accept option 'trainer.max_stepz'": ["--config", str(unknown)],
        'Parser key "trainer.max_steps"': ["--trainer.max_steps=abc"],
    }
    for expected, extra in cases.items():
        status, stderr = amlit_main([*demo, *extra], monkeypatch, capsys)
        assert status == 2 and expected in stderr, stderr
        assert "usage:" not in stderr and len(stderr.splitlines()) <= 3, stderr


def test_a_batch_the_devices_cannot_split_is_reported_before_any_process_starts(
    tiny_tree, tmp_path, data_root, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=3", "--trainer.accelerator=cpu"]
    args = [a for a in demo_args(tiny_tree, tmp_path, data_root) if a != "--trainer.devices=1"]
    status, stderr = amlit_main(["fit", *args, *ddp], monkeypatch, capsys)
    assert status == 2 and stderr.count("\n") == 1
    assert "data.batch_size=8 (the global batch) is not divisible by 3 devices" in stderr
    assert not torch.distributed.is_initialized()  # found in the launching process: no rank was started
