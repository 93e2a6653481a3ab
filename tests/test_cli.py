"""The shipped configs and the command line, run in-process (a subprocess costs ~7 s of imports each)."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO, TINY_SPEC, write_verification_bin
from lightning.pytorch.callbacks import LearningRateMonitor

from amlit.callbacks import ResultsWriter
from amlit.cli import find_user_error, run_cli
from amlit.errors import ConfigError, MissingDataError

CONFIGS = REPO / "configs"


def overrides(config: str, tiny_tree, tmp_path) -> list[str]:
    """Per shipped config: point the data at tiny generated trees and keep the network CPU-sized."""
    common = [f"--trainer.default_root_dir={tmp_path}", "--trainer.accelerator=cpu", "--trainer.devices=1"]
    if config == "demo.yaml":
        spec = TINY_SPEC
        return [
            *common,
            f"--data.root={tmp_path / 'synthetic'}",
            f"--data.train_identities={spec.train_identities}",
            f"--data.images_per_identity={spec.images_per_identity}",
            f"--data.test_identities={spec.test_identities}",
            f"--data.test_images_per_identity={spec.test_images_per_identity}",
            f"--data.pairs_per_fold={spec.pairs_per_fold}",
            "--data.val_identities=4",
            "--data.val_pairs_per_fold=2",
            "--data.megaface_distractors=40",
            "--data.batch_size=8",
            "--data.num_workers=0",
        ]
    if config == "amsoftmax_casia.yaml":
        return [
            *common,
            f"--data.train.root={tiny_tree / 'casia'}",
            f"--data.lfw_root={tiny_tree / 'lfw'}",
            f"--data.lfw_pairs={tiny_tree / 'lfw' / 'pairs.txt'}",
            f"--data.blufr_config={tiny_tree / 'lfw' / 'blufr_config.mat'}",
            f"--data.megaface_probes={tiny_tree / 'lfw'}",
            f"--data.megaface_distractors={tiny_tree / 'casia'}",
            "--data.megaface_identities=null",
            "--data.exclude_id_lists=[]",
            "--data.batch_size=4",
            "--data.eval_batch_size=64",
            # bf16-mixed (the config's) runs 5x slower on a CPU without bfloat16 units; a bf16-mixed fit of the
            # paper network is run by tests/test_gpu_check.py, bf16 embedding by tests/inference/test_embed.py
            "--trainer.precision=32-true",
            "--data.num_workers=0",
        ]
    raise AssertionError(f"configs/{config} is shipped but has no test overrides: add it here")


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_fits_and_tests_one_step(config, tiny_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths of the config (runs/...) land in tmp_path
    args = ["--config", str(CONFIGS / config), *overrides(config, tiny_tree, tmp_path)]
    cli = run_cli(["fit", *args, "--trainer.fast_dev_run=1"])
    assert cli.trainer.global_step == 1
    assert cli.model.head.num_classes == cli.datamodule.num_classes  # linked from the data
    cli = run_cli(["test", *args])  # all test images (tiny), as users run it: the results file has the config
    metrics = cli.trainer.callback_metrics
    assert metrics["test/lfw/num_pairs"] > 0
    assert 0 <= metrics["test/lfw/auc"] <= 1 and "test/lfw/roc" not in metrics  # scalars logged, the ROC curve not
    assert "test/blufr/vr@far=1e-3_mean_minus_std" in metrics
    assert {"test/megaface/rank1", "test/megaface/tar@far=1e-6"} <= set(metrics)  # every column of Table 1
    (writer,) = [c for c in cli.trainer.callbacks if isinstance(c, ResultsWriter)]
    document = json.loads((writer.output_dir / "results.json").read_text())
    assert document["test/lfw/acc"] == pytest.approx(metrics["test/lfw/acc"].item())
    assert document["manifest"]["num_classes"] == cli.datamodule.num_classes
    assert document["config"]["model"]["head"]["init_args"]["margin"] == cli.model.head.margin


def test_dotted_overrides_reach_the_head_and_print_config(tiny_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    cli = run_cli(["fit", *args, "--model.head.margin=0.2", "--model.head.scale=16", "--trainer.fast_dev_run=1"])
    assert (cli.model.head.margin, cli.model.head.scale) == (0.2, 16.0)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", *args, "--model.head.margin=0.4", "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: amlit.heads.AMSoftmax" in printed and "margin: 0.4" in printed


def _printed_head(args: list[str], capsys) -> dict:
    import yaml

    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(CONFIGS / "demo.yaml"), *args, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)["model"]["head"]


def test_another_head_class_starts_from_its_own_defaults_not_the_previous_heads_settings(capsys):
    """jsonargparse keeps the settings a new class accepts: AM-Softmax's cosine margin 0.35 and scale 30 became
    ArcFace's angular margin (radians) and scale."""
    head = _printed_head(["--model.head=amlit.heads.ArcFace"], capsys)
    assert head["init_args"] == {"margin": 0.5, "scale": 64.0, "easy_margin": False}
    head = _printed_head(["--model.head.class_path=CombinedMargin", "--model.head.angular_margin=0.4"], capsys)
    assert (head["init_args"]["scale"], head["init_args"]["angular_margin"]) == (64.0, 0.4)
    head = _printed_head(["--config", str(CONFIGS / "heads/softmax_dropout.yaml"), "--model.head=CenterLoss"], capsys)
    assert head["init_args"]["dropout"] == 0.0
    head = _printed_head(["--model.head.margin=0.2"], capsys)  # the same class keeps the config's other settings
    assert (head["class_path"], head["init_args"]["margin"], head["init_args"]["scale"]) == (
        "amlit.heads.AMSoftmax",
        0.2,
        30.0,
    )


def test_margin_out_of_range_is_a_config_error(tiny_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    with pytest.raises(ValueError, match="margin") as info:
        run_cli([*args, "--model.head.margin=1.2"])
    assert isinstance(find_user_error(info.value), ConfigError)
    assert "0 <= margin < 1, got 1.2" in str(find_user_error(info.value))


@pytest.mark.parametrize(
    ("setting", "said"),
    [("--trainer.accelerator=mps", "MPSAccelerator` can not run"), ("--trainer.devices=-3", "should be an int > 0")],
)
def test_a_trainer_this_machine_cannot_run_is_a_config_error(setting, said, tiny_tree, tmp_path, monkeypatch):
    """Lightning's MisconfigurationException/TypeError was a traceback (accelerator=gpu on a CPU machine, more GPUs
    than there are)."""
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path), setting]
    with pytest.raises(ConfigError, match="the trainer cannot run as configured here") as info:
        run_cli(args)
    assert said in str(info.value) and setting[2:] in str(info.value)


def test_paper_config_without_data_names_every_missing_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="data not found") as info:
        run_cli(["fit", "--config", str(CONFIGS / "amsoftmax_casia.yaml")])
    error = find_user_error(info.value)
    assert isinstance(error, MissingDataError)
    settings = ["data.train.root", "data.exclude_id_lists", "data.lfw_root", "data.lfw_pairs", "data.blufr_config"]
    settings += ["data.megaface_probes", "data.megaface_distractors", "data.megaface_identities"]
    for setting in settings:
        assert setting in str(error)


def test_a_rec_identity_list_set_to_null_is_cleared_and_the_hint_names_the_sources_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ids.txt").write_text("0000045\n")
    source = ["--data.train=amlit.data.RecordIO", "--data.train.path=missing", "--data.train.identity_list=ids.txt"]
    with pytest.raises(ValueError, match="data not found") as info:
        run_cli(["fit", "--config", str(CONFIGS / "amsoftmax_casia.yaml"), *source, "--data.train.identity_list=null"])
    error = str(find_user_error(info.value))
    assert "data.train.path: missing/train.rec" in error and "identity_list" not in error
    assert "e.g. --data.train.path=/path/to/it" in error and "data.train.root" not in error


@pytest.mark.slow
def test_console_script_prints_one_clear_error_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "amlit", "fit", "--config", str(CONFIGS / "amsoftmax_casia.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "amlit: error: data not found" in result.stderr
    assert "data/CASIA-WebFace-112X96" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_writes_the_embeddings_file(tiny_tree, tmp_path, monkeypatch):
    import numpy as np
    import torch

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    cli = run_cli(["predict", *args, "--data.eval_batch_size=16"])
    saved = np.load(tmp_path / "embeddings.npz")  # in the run folder (--trainer.default_root_dir)
    loader = cli.trainer.predict_dataloaders
    assert set(loader.dataset.files) >= set(cli.datamodule.lfw.images)  # every test image (LFW pairs + BLUFR list)
    assert saved["names"].tolist() == loader.dataset.files
    assert saved["features"].shape == (len(loader.dataset), 128)
    np.testing.assert_allclose(np.linalg.norm(saved["features"], axis=1), 1.0, rtol=1e-5)
    images, indices = next(iter(loader))
    x, _ = cli.model.on_after_batch_transfer((images, indices), 0)
    expected = cli.model.eval().embed(x)
    np.testing.assert_allclose(saved["features"][indices.numpy()], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert torch.all(indices == torch.arange(len(indices)))


@pytest.mark.parametrize("overlay", sorted(p.name for p in (CONFIGS / "heads").glob("*.yaml")))
def test_every_table1_head_overlay_composes_with_a_run_config_and_trains(overlay, tiny_tree, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), "--config", str(CONFIGS / "heads" / overlay)]
    cli = run_cli(["fit", *args, *overrides("demo.yaml", tiny_tree, tmp_path), "--trainer.fast_dev_run=2"])
    wanted = yaml.safe_load((CONFIGS / "heads" / overlay).read_text())["model"]["head"]
    assert type(cli.model.head).__name__ == wanted["class_path"].rsplit(".", 1)[1]
    for name, value in wanted["init_args"].items():
        setting = cli.model.head.dropout.p if name == "dropout" else getattr(cli.model.head, name)
        assert setting == value, name
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def test_sphereface_protocol_and_a_verification_bin_run_through_amlit_test(tiny_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bin_path, _ = write_verification_bin(tiny_tree / "lfw", tmp_path / "agedb_30.bin")
    args = ["--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    extra = [f"--data.verification_bins=[{bin_path}]", "--data.megaface_distractors=0", "--data.blufr=false"]
    metrics = {}
    for protocol in ("amsoftmax", "sphereface"):
        cli = run_cli(["test", *args, *extra, f"--data.pair_protocol={protocol}"])
        metrics[protocol] = {k: v.item() for k, v in cli.trainer.callback_metrics.items()}
    for protocol in metrics:  # the .bin holds the same pairs as pairs.txt: the same scores, the same accuracy
        assert metrics[protocol]["test/agedb_30/acc"] == pytest.approx(metrics[protocol]["test/lfw/acc"])
        assert 0 <= metrics[protocol]["test/lfw/auc"] <= 1
    assert metrics["amsoftmax"]["test/lfw/threshold"] != metrics["sphereface"]["test/lfw/threshold"]


def test_bf16_mixed_precision_trains_with_a_float32_head(tiny_tree, tmp_path, monkeypatch):
    """CPU autocast in bf16 (the paper config's precision): the backbone runs in bf16, the head's loss stays fp32."""
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    cli = run_cli(["fit", *args, "--trainer.precision=bf16-mixed", "--trainer.fast_dev_run=2"])
    loss = cli.trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    images = torch.randint(0, 256, (2, 112, 96, 3), dtype=torch.uint8)
    x, _ = cli.model.on_after_batch_transfer((images, torch.tensor([0, 1])), 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = cli.model(x)
        out = cli.model.head(embeddings, torch.tensor([0, 1]))
    assert embeddings.dtype == torch.bfloat16 and out.loss.dtype == out.cosine.dtype == torch.float32


def test_a_run_without_logger_trains_without_the_learning_rate_monitor(tiny_tree, tmp_path, monkeypatch):
    """--trainer.logger=false (a quick check) stopped with Lightning's MisconfigurationException: the shipped
    configs' LearningRateMonitor refuses a trainer without a logger. It is left out of such runs."""
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    cli = run_cli(["fit", *args, "--trainer.logger=false", "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
    assert cli.trainer.global_step == 1 and not cli.trainer.loggers
    assert not any(isinstance(c, LearningRateMonitor) for c in cli.trainer.callbacks)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_resuming_at_or_beyond_max_steps_says_that_it_trains_nothing(tiny_tree, tmp_path, monkeypatch):
    """A checkpoint at step 2 resumed with max_steps=1 trained nothing, exited 0 and warned only that the
    learning-rate milestones lie beyond max_steps (they were passed long ago)."""
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    args += ["--trainer.limit_val_batches=0", "--trainer.logger=false"]
    run_cli(["fit", *args, "--trainer.max_steps=2"])
    last = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.warns(
        UserWarning, match=r"checkpoint is at step 2, trainer.max_steps=1: this fit trains nothing"
    ) as seen:
        cli = run_cli(["fit", *args, "--trainer.max_steps=1", f"--ckpt_path={last}"])
    assert cli.trainer.global_step == 2
    assert not [w for w in seen if "lr_milestones" in str(w.message)]


@pytest.mark.parametrize(
    ("precision", "dtype", "head"),
    [("64-true", torch.float64, "normface.yaml"), ("bf16-true", torch.bfloat16, "center_loss.yaml")],
)
def test_true_precisions_feed_the_network_its_weights_dtype(precision, dtype, head, tiny_tree, tmp_path, monkeypatch):
    """The normalized images were float32 whatever the weights' dtype: 64-true and bf16-true failed at the first
    convolution, and the Center loss update mixed float32 features into bfloat16 centers."""
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), "--config", str(CONFIGS / "heads" / head)]
    args += [*overrides("demo.yaml", tiny_tree, tmp_path), f"--trainer.precision={precision}"]
    cli = run_cli(["fit", *args, "--trainer.fast_dev_run=2"])
    assert cli.trainer.global_step == 2 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert cli.model.head.weight.dtype == dtype


def test_validate_refuses_held_out_identities_other_than_those_the_checkpoint_was_trained_without(
    tiny_tree, tmp_path, monkeypatch
):
    """Another data.seed held out other identities of the same tree (the class count still fit): val/heldout then
    scored identities the checkpoint was trained on."""
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    run_cli(["fit", *args, "--trainer.max_steps=1", "--trainer.val_check_interval=1", "--model.lr_milestones=[]"])
    checkpoint = f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"
    with pytest.raises(ConfigError, match=r"trained on other images than this config leaves for training") as info:
        run_cli(["validate", *args, checkpoint, "--data.seed=3"])
    assert "held out by data.seed=0" in str(info.value) and "held out by data.seed=3" in str(info.value)
    cli = run_cli(["validate", *args, checkpoint])  # the training's own held-out identities
    assert "val/heldout/acc" in cli.trainer.callback_metrics


def test_validate_prints_its_metrics_as_test_does(tiny_tree, tmp_path, monkeypatch, caplog):
    import logging

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "demo.yaml"), *overrides("demo.yaml", tiny_tree, tmp_path)]
    with caplog.at_level(logging.INFO):
        cli = run_cli(["validate", *args])
    (table,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("validation results:")]
    accuracy = cli.trainer.callback_metrics["val/heldout/acc"].item()
    assert "val/heldout/acc" in table and f"{accuracy:.6g}" in table


def test_one_file_given_for_a_list_setting_is_that_file_not_a_list_of_its_lines(
    tiny_tree, tmp_path, monkeypatch, capsys
):
    # jsonargparse reads one path given to a list-of-paths setting as a file of paths: the ids of an exclusion list
    # became "lists" that do not exist
    monkeypatch.chdir(tmp_path)
    identities = sorted(p.name for p in (tiny_tree / "casia").iterdir() if p.is_dir())
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"{identities[0]}\n{identities[5]}\n")
    args = ["--config", str(CONFIGS / "amsoftmax_casia.yaml"), *overrides("amsoftmax_casia.yaml", tiny_tree, tmp_path)]
    one = f"--data.exclude_id_lists={exclude}"
    cli = run_cli(["fit", *args, one, "--trainer.fast_dev_run=1"])
    assert cli.datamodule.removed_identities == [identities[0], identities[5]]
    capsys.readouterr()
    for given in (one, f"--data.exclude_id_lists=[{exclude}]", f"--data.exclude_id_lists+={exclude}"):
        with pytest.raises(SystemExit):
            run_cli(["fit", *args, given, "--print_config"])
        written = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["exclude_id_lists"]
        assert written in (str(exclude), [str(exclude)]), given  # config.yaml keeps it readable
