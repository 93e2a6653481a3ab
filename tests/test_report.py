"""`amlit report`: Table 1 / Table 2 / Figure 6 from runs that `amlit test` wrote, and the Table 1 run plans."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from test_cli import CONFIGS, overrides

from amlit.cli import run_cli, run_tool
from amlit.errors import BadDataError, MissingDataError, StorageError
from amlit.eval.blufr import read_blufr_config
from amlit.eval.curves import Curve, load_curves, save_curves
from amlit.eval.label_pairs import count_pairs
from amlit.report import make_report
from amlit.report.paper import BLUFR_OFFICIAL, BLUFR_TRIALS, TABLE1, TABLE1_BY_KEY, TABLE1_COLUMNS, TABLE2, paper_row
from amlit.sweep import load_sweep, run_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row_head(row: str, base_head: dict) -> dict:
    """The head a sweep row gives on top of the run config's head (same class: init_args merge, as jsonargparse)."""
    overlay = yaml.safe_load((REPO / row).read_text() if row.endswith(".yaml") else row)
    head = overlay["model"]["head"]
    if head["class_path"] == base_head["class_path"]:
        return {"class_path": head["class_path"], "init_args": {**base_head["init_args"], **head["init_args"]}}
    return head


PLANS = [("table1.yaml", "amsoftmax_casia.yaml"), ("table1_demo.yaml", "demo.yaml")]


@pytest.mark.parametrize(("sweep", "base"), PLANS)
def test_table1_plans_train_every_paper_row_once_on_one_run_config(sweep, base):
    config = load_sweep(REPO / "sweeps" / sweep)
    command = config["command"]
    assert command[command.index("--config") + 1] == f"configs/{base}"  # one backbone, data and schedule for all
    assert list(config["parameters"]) == ["config"]  # the rows are the only thing that varies
    base_head = yaml.safe_load((CONFIGS / base).read_text())["model"]["head"]
    rows = [paper_row(_row_head(row, base_head)) for row in config["parameters"]["config"]["values"]]
    assert [row for row in rows if row] == [row.key for row in TABLE1]  # every row, once, in the paper's order
    assert rows.count(None) == 2  # + ArcFace and the combined margin


def test_paper_values_are_the_published_ones():
    """Spot checks against the arXiv text (Table 1 and Table 2)."""
    assert TABLE1_BY_KEY["am_softmax_0.35"].values == (98.98, 93.51, 97.69, 84.82, 72.47, 84.44)
    assert TABLE1_BY_KEY["softmax"].values[0] == 97.08 and TABLE1_BY_KEY["am_softmax_wo_fn_0.4"].values[2] == 97.96
    assert TABLE2 == {True: (72.47, 84.44), False: (75.23, 87.06)}
    assert TABLE2[True] == TABLE1_BY_KEY["am_softmax_0.35"].values[4:]  # the same model in both tables
    assert [c.key for c in TABLE1_COLUMNS][-2:] == ["test/megaface/rank1", "test/megaface/tar@far=1e-6"]


HEADS = {  # run name -> head overlay (untrained networks: the report does not care how good they are)
    "am035": "{model: {head: {class_path: amlit.heads.AMSoftmax, init_args: {margin: 0.35, scale: 30.0}}}}",
    "softmax": str(CONFIGS / "heads" / "softmax.yaml"),
    "arcface": str(CONFIGS / "heads" / "arcface.yaml"),
}


@pytest.fixture(scope="module")
def tested_runs(tiny_tree, tmp_path_factory):
    """Three tiny demo runs tested in-process (untrained weights): results.json + curves.json in runs/<name>/results."""
    root = tmp_path_factory.mktemp("report-runs")
    clis = {}
    for seed, (name, head) in enumerate(HEADS.items()):
        run_dir = root / "runs" / name
        args = ["--config", str(CONFIGS / "demo.yaml"), f"--config={head}", *overrides("demo.yaml", tiny_tree, run_dir)]
        clis[name] = run_cli(["test", *args, "--trainer.logger=false", f"--seed_everything={seed}"])  # other networks
    return root / "runs", clis


def test_amlit_test_saves_its_curves_machine_readably(tested_runs):
    runs, clis = tested_runs
    curves = load_curves(runs / "am035" / "results" / "curves.json")
    expected = {k: v for k, v in clis["am035"].model.eval_results.items() if isinstance(v, Curve)}
    assert set(curves) == set(expected) >= {"test/lfw/roc", "test/megaface/cmc", "test/megaface/roc"}
    for key, curve in expected.items():
        np.testing.assert_array_equal(curves[key].x, curve.x)  # exact: JSON keeps every float64 digit
        np.testing.assert_array_equal(curves[key].y, curve.y)
        assert (curves[key].x_label, curves[key].log_x) == (curve.x_label, curve.log_x)
    results = json.loads((runs / "am035" / "results" / "results.json").read_text())
    assert "test/megaface/rank1@distractors=10" in results  # 40 tiny distractors: only the devkit's 10 fits
    assert results["test/blufr/num_trials"] == 10  # what BLUFR's mean - std is over, for the report to check
    assert curves["test/megaface/rank1_vs_distractors"].x.tolist() == [10, 40]


def test_report_writes_both_tables_and_figure6_from_tested_runs(tested_runs, tmp_path, capsys):
    runs, _ = tested_runs
    output = tmp_path / "report"
    written = run_tool(["report", f"--runs={runs}", f"--output={output}"])  # one folder, not a list file
    assert set(written) == {
        "table1.md", "table1.csv", "table2.md", "table2.csv",
        "figure6_cmc.png", "figure6_roc.png", "megaface_rank1_vs_distractors.png",
    }  # fmt: skip
    for name in ("figure6_cmc.png", "figure6_roc.png", "megaface_rank1_vs_distractors.png"):
        data = (output / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name

    table = pd.read_csv(output / "table1.csv").set_index("run")
    assert list(table.index) == ["softmax", "am035", "arcface"]  # the paper's row order, other heads last
    assert table.loc["am035", "paper_row"] == "AM-Softmax m=0.35" and table.loc["softmax", "paper_row"] == "Softmax"
    assert pd.isna(table.loc["arcface", "paper_row"]) and table.loc["arcface", "head"] == "ArcFace"
    for name in ("am035", "softmax"):
        results = json.loads((runs / name / "results" / "results.json").read_text())
        for column in TABLE1_COLUMNS:
            assert table.loc[name, column.name] == pytest.approx(100 * results[column.key])
        # The tiny test sets are not the paper's (6,000 LFW pairs, official BLUFR, 1M distractors): no paper number.
        assert table.loc[name, [f"{c.name}_{part}" for c in TABLE1_COLUMNS for part in ("paper", "delta")]].isna().all()
        lfw_pairs = f"{int(results['test/lfw/num_pairs']):,} LFW pairs scored, the paper's 6,000"
        assert (
            lfw_pairs in table.loc[name, "not_compared"]
            and "40 MegaFace distractors" in table.loc[name, "not_compared"]
        )
        # amlit test records the BLUFR trials, and its run config the pair protocol and far rule, all the paper's
        assert "does not record" not in table.loc[name, "not_compared"]
        assert not any(s in table.loc[name, "not_compared"] for s in ("trials", "pair protocol", "FAR rule"))
    assert table.loc["arcface", ["lfw_paper", "lfw_delta"]].isna().all()  # no paper number to compare with
    assert (table.loc["am035", ["m", "s"]] == ["0.35", "30"]).all()
    assert (table["megaface_distractors"] == 40).all()  # not the paper's 1M: said beside every row

    second = pd.read_csv(output / "table2.csv").set_index("run")
    assert (second["overlap_removal"] == "no").all()  # the generated data removes no identity
    assert second[["megaface_rank1_paper", "megaface_vr_paper"]].isna().all().all()  # 40 distractors, not 1M
    assert "40 MegaFace distractors, the paper's 1,000,000" in second.loc["am035", "not_compared"]

    markdown = (output / "table1.md").read_text()
    assert "| am035 | AM-Softmax m=0.35 | AM-Softmax | 0.35 | 30 |" in markdown and "98.98" not in markdown
    assert "- am035: LFW 6,000 pairs: " in markdown and "arXiv:1801.05599" in markdown
    assert markdown in capsys.readouterr().out


PAPER_PROTOCOL = {
    "test/lfw/num_pairs": 6000,
    "test/blufr/num_impostors": 44_003_474,
    "test/blufr/num_trials": 10,
    "test/megaface/num_distractors": 1e6,
}
PAPER_SETTINGS = {"pair_protocol": "amsoftmax", "far_rule": "evalroc"}  # of the run config's data module


def _results_run(root, name: str, counts: dict, settings: dict | None = PAPER_SETTINGS) -> None:
    """A tested AM-Softmax m=0.35 run's results.json (as `amlit test` writes it) with the given protocol counts and
    data settings (None: a run config without a data module, as results.json of a run outside the CLI)."""
    folder = root / name / "results"
    folder.mkdir(parents=True)
    head = {"class_path": "amlit.heads.AMSoftmax", "init_args": {"margin": 0.35, "scale": 30.0}}
    config = {"model": {"head": head}}
    if settings is not None:
        config["data"] = {"class_path": "amlit.data.CasiaDataModule", "init_args": settings}
    metrics = {column.key: 0.5 for column in TABLE1_COLUMNS}
    document = {**metrics, **counts, "config": config, "manifest": {"removed_identities": []}}
    (folder / "results.json").write_text(json.dumps(document))


def test_report_compares_with_the_paper_only_runs_measured_as_the_paper_was(tmp_path):
    runs = tmp_path / "runs"
    _results_run(runs, "paper", PAPER_PROTOCOL)
    _results_run(runs, "small", {**PAPER_PROTOCOL, "test/lfw/num_pairs": 400, "test/megaface/num_distractors": 1e3})
    _results_run(runs, "generated_blufr", {**PAPER_PROTOCOL, "test/blufr/num_impostors": 15_660})
    _results_run(runs, "unrecorded", {})  # written elsewhere: how it was measured is unknown
    written = make_report([runs], output=tmp_path / "report")
    table = pd.read_csv(written["table1.csv"]).set_index("run")
    published = TABLE1_BY_KEY["am_softmax_0.35"].values
    for column, value in zip(TABLE1_COLUMNS, published, strict=True):
        assert table.loc["paper", f"{column.name}_paper"] == value
        assert table.loc["paper", f"{column.name}_delta"] == pytest.approx(50.0 - value)
    assert pd.isna(table.loc["paper", "not_compared"])
    blank = table.loc["small", ["lfw_paper", "lfw_delta", "megaface_rank1_paper", "megaface_vr_delta"]]
    assert blank.isna().all() and table.loc["small", "blufr_vr_1e-3_paper"] == published[2]
    assert table.loc["small", "not_compared"] == (
        "LFW 6,000 pairs: 400 LFW pairs scored, the paper's 6,000; MegaFace Rank1@1e6, MegaFace VR@FAR=1e-6: "
        "1,000 MegaFace distractors, the paper's 1,000,000"
    )
    blufr = [f"{c.name}_paper" for c in TABLE1_COLUMNS if c.name.startswith("blufr")]
    assert table.loc["generated_blufr", blufr].isna().all() and table.loc["generated_blufr", "lfw_paper"] == 98.98
    assert (
        "15,660 impostor pairs in the smallest BLUFR trial, the paper's 44,003,474"
        in (table.loc["generated_blufr", "not_compared"])
    )
    assert table.loc["unrecorded", [f"{c.name}_paper" for c in TABLE1_COLUMNS]].isna().all()
    assert "does not record the LFW pairs scored (test/lfw/num_pairs)" in table.loc["unrecorded", "not_compared"]
    second = pd.read_csv(written["table2.csv"]).set_index("run")
    assert second.loc["paper", "megaface_rank1_paper"] == TABLE2[False][0]  # no identity removed: the "No" row
    assert second.loc["small", ["megaface_rank1_paper", "megaface_rank1_delta"]].isna().all()
    markdown = written["table1.md"].read_text()
    assert "| paper | AM-Softmax m=0.35 | AM-Softmax | 0.35 | 30 | 1000000 | 50.00 | 98.98 | -48.98 |" in markdown
    assert "- small: LFW 6,000 pairs: 400 LFW pairs scored, the paper's 6,000; MegaFace" in markdown
    assert "- paper:" not in markdown


BLUFR_TITLES = "BLUFR VR@FAR=0.01%, BLUFR VR@FAR=0.1%, BLUFR DIR@FAR=1%"


def test_report_compares_only_runs_scored_with_the_papers_pair_protocol_blufr_trials_and_far_rule(tmp_path):
    runs = tmp_path / "runs"
    _results_run(runs, "sphereface", PAPER_PROTOCOL, {**PAPER_SETTINGS, "pair_protocol": "sphereface"})
    _results_run(runs, "five_trials", {**PAPER_PROTOCOL, "test/blufr/num_trials": 5})
    _results_run(runs, "at_most", PAPER_PROTOCOL, {**PAPER_SETTINGS, "far_rule": "at_most"})
    older = {key: value for key, value in PAPER_PROTOCOL.items() if key != "test/blufr/num_trials"}
    _results_run(runs, "older", older, settings=None)  # before num_trials, and no run config (outside the CLI)
    _results_run(
        runs,
        "everything",
        {**PAPER_PROTOCOL, "test/lfw/num_pairs": 400, "test/blufr/num_trials": 3},
        {"pair_protocol": "sphereface", "far_rule": "interpolated"},
    )
    written = make_report([runs], output=tmp_path / "report")
    table = pd.read_csv(written["table1.csv"]).set_index("run")
    published = dict(zip([c.name for c in TABLE1_COLUMNS], TABLE1_BY_KEY["am_softmax_0.35"].values, strict=True))
    lfw, blufr, megaface = ["lfw"], [c.name for c in TABLE1_COLUMNS[1:4]], ["megaface_rank1", "megaface_vr"]

    def compared(run: str) -> list[str]:
        return [name for name in published if table.loc[run, f"{name}_paper"] == published[name]]

    # SphereFace's pair protocol changes LFW accuracy only; BLUFR and MegaFace do not score pairs.
    assert compared("sphereface") == blufr + megaface and pd.isna(table.loc["sphereface", "lfw_delta"])
    assert table.loc["sphereface", "not_compared"] == (
        "LFW 6,000 pairs: pair protocol sphereface (data.pair_protocol), the paper's amsoftmax"
    )
    assert compared("five_trials") == lfw + megaface
    assert table.loc["five_trials", "not_compared"] == f"{BLUFR_TITLES}: 5 BLUFR trials, the paper's 10"
    # Another FAR rule moves the BLUFR figures, but not LFW accuracy nor MegaFace at 1M distractors (FAR x N is an
    # integer there, where the rules agree but for genuine scores between two adjacent impostor scores).
    assert compared("at_most") == lfw + megaface
    assert (
        table.loc["at_most", "not_compared"] == f"{BLUFR_TITLES}: FAR rule at_most (data.far_rule), the paper's evalroc"
    )
    # What results.json does not record is not taken for the paper's, as a missing count is not.
    assert compared("older") == megaface
    assert table.loc["older", "not_compared"] == (
        "LFW 6,000 pairs: results.json does not record the pair protocol (data.pair_protocol of its run config); "
        f"the paper's: amsoftmax; {BLUFR_TITLES}: results.json does not record the BLUFR trials "
        "(test/blufr/num_trials); the paper's: 10 and results.json does not record the FAR rule (data.far_rule of "
        "its run config); the paper's: evalroc"
    )
    assert compared("everything") == megaface
    assert table.loc["everything", "not_compared"] == (
        "LFW 6,000 pairs: 400 LFW pairs scored, the paper's 6,000 and pair protocol sphereface (data.pair_protocol), "
        f"the paper's amsoftmax; {BLUFR_TITLES}: 3 BLUFR trials, the paper's 10 and FAR rule interpolated "
        "(data.far_rule), the paper's evalroc"
    )
    second = pd.read_csv(written["table2.csv"]).set_index("run")  # MegaFace only: compared in every run
    assert (second["megaface_rank1_paper"] == TABLE2[False][0]).all() and second["not_compared"].isna().all()
    markdown = written["table1.md"].read_text()
    assert f"- five_trials: {BLUFR_TITLES}: 5 BLUFR trials, the paper's 10\n" in markdown


def test_the_official_blufr_config_has_the_trial_count_the_report_expects(shared_data):
    config = read_blufr_config(shared_data / "blufr" / "blufr_lfw_config.mat")
    assert config.num_trials == BLUFR_TRIALS.expected == 10


def test_the_official_blufr_config_has_the_impostor_count_the_report_expects(shared_data):
    config = read_blufr_config(shared_data / "blufr" / "blufr_lfw_config.mat")
    labels = torch.as_tensor(config.labels)
    smallest = min(count_pairs(labels[torch.as_tensor(test)])[1] for test in config.test_index)
    assert smallest == BLUFR_OFFICIAL.expected == 44_003_474


def test_report_reads_a_trials_csv_and_lists_the_trials_it_cannot_report(tested_runs, tmp_path, capsys):
    runs, _ = tested_runs
    sweep = tmp_path / "sweep"
    for trial, name in enumerate(HEADS):
        (sweep / f"trial-{trial}").mkdir(parents=True)
        if name != "softmax":  # trial 1 trained (fit) but was never tested
            shutil.copytree(runs / name / "results", sweep / f"trial-{trial}" / "results")
    (sweep / "trial-3").mkdir()
    pd.DataFrame(  # the runner's columns
        {
            "trial": [0, 1, 2, 3],
            "config": list(HEADS.values()) + ["x"],
            "status": ["finished", "finished", "finished", "failed"],
            "exit_code": [0, 0, 0, 2],
            "run_dir": [f"elsewhere/sweep/trial-{k}" for k in range(4)],  # made on another machine
            "seconds": [1.0] * 4,
        }
    ).to_csv(sweep / "trials.csv", index=False)
    written = make_report([sweep / "trials.csv"], output=tmp_path / "report")
    table = pd.read_csv(written["table1.csv"])
    assert table["run"].tolist() == ["trial-0", "trial-2"]
    printed = capsys.readouterr().out
    assert "left out trial-1: no results.json" in printed and "ran `amlit fit` only" in printed
    assert "left out trial-3: failed (exit status 2)" in printed
    assert "left out trial-1" in (tmp_path / "report" / "table1.md").read_text()


def test_report_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(MissingDataError, match="does not exist"):
        make_report([tmp_path / "nowhere"], output=tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match=r"no results\.json below"):
        make_report([tmp_path / "empty"], output=tmp_path / "out")
    broken = tmp_path / "run" / "results"
    broken.mkdir(parents=True)
    (broken / "results.json").write_text("{not json")
    with pytest.raises(BadDataError, match="not a results file"):
        make_report([tmp_path / "run"], output=tmp_path / "out")
    (broken / "results.json").write_text(json.dumps({"lfw/num_pairs": 6000.0, "lfw/acc": 0.9}))  # amlit score's
    with pytest.raises(BadDataError, match=r"holds no `amlit test` metrics .*lfw/num_pairs"):
        make_report([tmp_path / "run"], output=tmp_path / "out")
    (broken / "results.json").write_text(json.dumps({"test/lfw/acc": "0.99", "test/megaface/rank1": 0.7}))
    with pytest.raises(BadDataError, match=r"results\.json: test/lfw/acc is text \('0\.99'\), not a number"):
        make_report([tmp_path / "run"], output=tmp_path / "out")  # was: a blank LFW cell, without a word
    for section in ("config", "manifest"):  # a hand-edited or other tool's file: AttributeError tracebacks
        (broken / "results.json").write_text(json.dumps({"test/lfw/acc": 0.9, section: "amsoftmax"}))
        with pytest.raises(BadDataError, match=rf"results\.json: its '{section}' is a str, not the JSON object"):
            make_report([tmp_path / "run"], output=tmp_path / "out")
    (broken / "results.json").write_text(json.dumps({"test/lfw/acc": 0.9}))
    (broken / "curves.json").write_text(json.dumps({"test/megaface/cmc": {"x": [1]}}))
    with pytest.raises(BadDataError, match=r"curves\.json is not a curves file"):
        make_report([tmp_path / "run"], output=tmp_path / "out")
    save_curves({}, broken / "curves.json")  # a run without MegaFace: the tables, no Figure 6, and a note
    written = make_report([tmp_path / "run"], output=tmp_path / "out")
    assert "figure6_cmc.png" not in written
    assert "no test/megaface/cmc curve in run" in written["table1.md"].read_text()
    assert math.isnan(pd.read_csv(written["table1.csv"])["megaface_rank1"].iloc[0])


def test_a_run_named_twice_is_one_row(tmp_path):
    """[runs, runs/a] (or one path given twice) reported the same results.json as two identical rows."""
    for name in ("a", "b"):
        (tmp_path / "runs" / name / "results").mkdir(parents=True)
        (tmp_path / "runs" / name / "results" / "results.json").write_text(json.dumps({"test/lfw/acc": 0.9}))
    runs = tmp_path / "runs"
    written = make_report([runs, runs / "a", runs / "a" / "results" / "results.json"], output=tmp_path / "out")
    assert pd.read_csv(written["table1.csv"])["run"].tolist() == ["a", "b"]


def test_report_refuses_an_output_that_is_a_file_before_reading_runs(tmp_path):
    """--output naming a file, or a path below one, gave a FileExistsError/NotADirectoryError traceback."""
    (tmp_path / "afile").write_text("x")
    for output in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(StorageError, match=r"cannot write --output=.*afile.* is a file, not a folder"):
            make_report([tmp_path / "nowhere"], output=output)


@pytest.mark.slow
def test_table1_demo_plan_trains_tests_and_reports_a_row(tmp_path, monkeypatch):
    """One row of sweeps/table1_demo.yaml through `amlit sweep` (fit, then test on the last.ckpt), then the report."""
    monkeypatch.chdir(REPO)  # the sweep's command names configs/... relative to the repository root
    tiny = [a for a in overrides("demo.yaml", None, tmp_path) if not a.startswith("--trainer.default_root_dir")]
    tiny = [a for a in tiny if not a.startswith("--data.root")] + [f"--data.root={tmp_path / 'synthetic'}"]
    table = run_sweep(
        REPO / "sweeps" / "table1_demo.yaml",
        output=tmp_path / "sweep",
        max_trials=1,
        extra_args=[*tiny, "--trainer.max_steps=2", "--trainer.val_check_interval=2"],
    )
    log = (tmp_path / "sweep" / "trial-0" / "output.log").read_text()
    assert table["status"].tolist() == ["finished"], log[-3000:]
    assert 0 <= table["val/heldout/acc"].iloc[0] <= 1  # the fit's validation, though the test logged after it
    results = json.loads((tmp_path / "sweep" / "trial-0" / "results" / "results.json").read_text())
    checkpoint = tmp_path / "sweep" / "trial-0" / "checkpoints" / "last.ckpt"
    assert results["checkpoint"] == str(checkpoint)  # tested the trained weights, not an untrained network
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 2
    written = make_report([tmp_path / "sweep"], output=tmp_path / "report")
    assert pd.read_csv(written["table1.csv"])["paper_row"].tolist() == ["Softmax"]


@pytest.mark.slow
def test_slurm_array_task_runs_its_own_row_into_its_own_folder(tmp_path):
    """The array script as SLURM runs task 3 (here with --dry_run, which prints the trial's command)."""
    import os
    import subprocess
    import sys

    script = REPO / "scripts" / "slurm" / "table1_array.sbatch"
    env = {
        **os.environ,
        "SLURM_ARRAY_TASK_ID": "3",
        "AMLIT_OUTPUT": str(tmp_path / "table1"),
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",  # amlit of this venv
    }
    result = subprocess.run(
        ["bash", str(script), "--dry_run=true"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert line.startswith("trial 3: ") and "-m amlit.sweep.trial --config configs/amsoftmax_casia.yaml" in line
    assert "--config=configs/heads/normface.yaml" in line  # row 3 of sweeps/table1.yaml
    assert line.endswith(f"--trainer.default_root_dir={tmp_path / 'table1' / 'row-3' / 'trial-3'}")
    assert not (tmp_path / "table1").exists()  # a dry run writes nothing (the trial folder comes when it runs)
