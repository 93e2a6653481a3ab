"""``amlit verify`` and the calibration it reads: which threshold, from where, and refusals instead of guesses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from inference_helpers import write_checkpoint
from test_embed import aligned_faces

from amlit.cli import run_tool
from amlit.errors import BadDataError, ConfigError
from amlit.inference.calibration import calibration_from_metrics
from amlit.inference.models import load_model


def write_card(path: Path, weights_sha256: str, sets: dict) -> Path:
    path.write_text(json.dumps({"weights_sha256": weights_sha256, "calibration": {"rule": "...", "sets": sets}}))
    return path


def test_calibration_is_read_from_the_test_metrics():
    metrics = {
        "test/lfw/acc": 0.99,
        "test/lfw/num_impostors": 3000.0,
        "test/lfw/threshold@far=1e-3": 0.31,
        "test/blufr/num_impostors": 46_000_000.0,
        "test/blufr/threshold@far=1e-3": 0.25,
        "test/blufr/threshold@far=1e-3_std": 0.01,
        "test/blufr/threshold@far=1e-6": 0.5,
        "test/cfp_fp/num_impostors": 350.0,  # resolves no FAR: left out
        "val/heldout/threshold@far=1e-3": 0.9,  # another stage
    }
    assert calibration_from_metrics(metrics) == {
        "lfw": {"num_impostors": 3000, "thresholds": {"1e-3": 0.31}},
        "blufr": {
            "num_impostors": 46_000_000,
            "thresholds": {"1e-3": 0.25, "1e-6": 0.5},
            "threshold_std": {"1e-3": 0.01},
        },
    }


@pytest.fixture
def two_faces(tmp_path) -> tuple[Path, list[str]]:
    write_checkpoint(tmp_path / "model.ckpt")
    return tmp_path / "faces", aligned_faces(tmp_path / "faces", 3)


def test_two_faces_are_decided_with_the_threshold_of_the_largest_calibrated_set(two_faces, tmp_path, capsys):
    faces, names = two_faces
    model = tmp_path / "model.ckpt"
    features = np.load(_embed(model, faces, tmp_path))["features"]
    cosine = float(features[0].astype(np.float64) @ features[1].astype(np.float64))
    sha = load_model(model, "cpu").weights_sha256
    sets = {
        "lfw": {"num_impostors": 3000, "thresholds": {"1e-3": cosine + 0.01}},  # would reject
        "blufr": {"num_impostors": 46_000_000, "thresholds": {"1e-3": cosine - 0.01, "1e-4": 0.9}},  # accepts
    }
    card = write_card(tmp_path / "card.json", sha, sets)
    args = ["verify", f"--model={model}", f"--image1={faces / names[0]}", f"--image2={faces / names[1]}"]
    result = run_tool([*args, f"--calibration={card}", "--far=0.001"])
    assert result["cosine"] == pytest.approx(cosine, abs=1e-6)
    assert result["same"] is True and result["threshold"] == cosine - 0.01  # BLUFR: more impostor pairs
    out = capsys.readouterr().out
    assert "at FAR 1e-3: calibrated by amlit test on test set 'blufr' (46,000,000 impostor pairs)" in out
    assert f"from {card}" in out and "-> same person" in out
    assert run_tool([*args, f"--calibration={card}", "--test_set=lfw"])["same"] is False
    # model_card.json beside the model is found without --calibration
    write_card(tmp_path / "model_card.json", sha, sets)
    assert run_tool(args)["threshold"] == cosine - 0.01


def test_no_calibration_other_weights_or_an_uncalibrated_far_are_refused(two_faces, tmp_path):
    faces, names = two_faces
    model = tmp_path / "model.ckpt"
    args = ["verify", f"--model={model}", f"--image1={faces / names[0]}", f"--image2={faces / names[1]}"]
    with pytest.raises(ConfigError, match="has no calibrated thresholds, and amlit does not invent one: run `amlit"):
        run_tool(args)
    other = write_card(tmp_path / "other.json", "0" * 64, {"lfw": {"num_impostors": 3000, "thresholds": {"1e-3": 0}}})
    with pytest.raises(ConfigError, match="was measured on other weights"):
        run_tool([*args, f"--calibration={other}"])
    sha = load_model(model, "cpu").weights_sha256
    card = write_card(tmp_path / "card.json", sha, {"lfw": {"num_impostors": 3000, "thresholds": {"1e-3": 0.3}}})
    with pytest.raises(ConfigError, match=r"no calibrated threshold at FAR 1e-5 .*\(calibrated: lfw: FAR 1e-3\)"):
        run_tool([*args, f"--calibration={card}", "--far=1e-5"])
    # 1e-2 is no FAR amlit test calibrates: a larger test set (the advice for 1e-5) would not give it either
    with pytest.raises(ConfigError, match=r"FAR 1e-2: amlit test calibrates FAR 1e-3, 1e-4, 1e-5, 1e-6 only") as info:
        run_tool([*args, f"--calibration={card}", "--far=0.01"])
    assert "larger set" not in str(info.value) and "lfw: FAR 1e-3" in str(info.value)
    # a card without thresholds (amlit test on sets too small for any FAR, an export made without --calibration)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"weights_sha256": sha, "calibration": None}))
    with pytest.raises(ConfigError, match=r"empty.json holds no calibrated thresholds \(calibration: null\)"):
        run_tool([*args, f"--calibration={empty}"])
    # a card edited by hand: a KeyError / TypeError traceback before
    for sets in (
        {"mine": {"num_impostors": 5000, "thresholds": {"1e-3": "0.3"}}},
        {"mine": {"thresholds": {"1e-3": 0.3}}},
        {"mine": {"num_impostors": 5000}},
        ["0.3"],
    ):
        edited = write_card(tmp_path / "edited.json", sha, sets)
        with pytest.raises(BadDataError, match=r"edited.json: its calibration .*is not .*\"num_impostors\": <int>"):
            run_tool([*args, f"--calibration={edited}"])
    with pytest.raises(ConfigError, match=r"--test_set=megaface: .* calibrates lfw"):
        run_tool([*args, f"--calibration={card}", "--test_set=megaface"])
    with pytest.raises(ConfigError, match="give either --image1 and --image2, or --pairs"):
        run_tool(["verify", f"--model={model}", f"--image1={faces / names[0]}"])
    with pytest.raises(ConfigError, match="--batch_size must be >= 1, got 0"):  # was ignored: one batch of all
        run_tool([*args, f"--calibration={card}", "--batch_size=0"])


def test_a_pairs_file_gives_one_decision_per_pair_and_names_unreadable_images(two_faces, tmp_path):
    faces, names = two_faces
    model = tmp_path / "model.ckpt"
    (faces / "broken.jpg").write_bytes(b"not an image")
    (faces / "pairs.txt").write_text(
        f"# left right\n{names[0]} {names[1]}\n{names[0]}\t{names[2]}\n{names[1]} broken.jpg\n"
    )
    sha = load_model(model, "cpu").weights_sha256
    card = write_card(tmp_path / "card.json", sha, {"lfw": {"num_impostors": 3000, "thresholds": {"1e-3": 0.5}}})
    output = tmp_path / "decisions.csv"
    counts = run_tool(
        ["verify", f"--model={model}", f"--pairs={faces / 'pairs.txt'}", f"--calibration={card}", f"--output={output}"]
    )
    table = pd.read_csv(output, keep_default_na=False)
    features = np.load(_embed(model, faces, tmp_path))
    row = {name: k for k, name in enumerate(features["names"].tolist())}
    expected = [float(features["features"][row[a]].astype(np.float64) @ features["features"][row[b]]) for a, b in
                [(names[0], names[1]), (names[0], names[2])]]  # fmt: skip
    np.testing.assert_allclose(table["cosine"][:2].astype(float), expected, atol=1e-6)
    assert table["decision"][:2].tolist() == ["same" if c >= 0.5 else "different" for c in expected]
    assert table["decision"][2] == "not scored" and "not an image" in table["problem"][2]
    assert counts == {"pairs": 3, "scored": 2, "same": sum(c >= 0.5 for c in expected)}

    # no pair scored (here: every pair has the broken image): an error, with each pair's problem still written
    (faces / "pairs.txt").write_text(f"{names[0]} broken.jpg\nbroken.jpg {names[1]}\n")
    output.unlink()
    with pytest.raises(
        BadDataError, match=r"none of the 2 pairs of .*pairs.txt could be scored: 1 images .*not an image"
    ):
        run_tool(
            [
                "verify",
                f"--model={model}",
                f"--pairs={faces / 'pairs.txt'}",
                f"--calibration={card}",
                f"--output={output}",
            ]
        )
    assert pd.read_csv(output, keep_default_na=False)["decision"].tolist() == ["not scored"] * 2


def test_images_that_all_fail_in_the_last_batch_leave_their_pairs_unscored(two_faces, tmp_path):
    """A last batch of bad images only (files missing after a full batch, or every image): their pairs are not
    scored, the rest are; it was a numpy shape error (a traceback)."""
    faces, names = two_faces
    model = tmp_path / "model.ckpt"
    sha = load_model(model, "cpu").weights_sha256
    card = write_card(tmp_path / "card.json", sha, {"lfw": {"num_impostors": 3000, "thresholds": {"1e-3": 0.5}}})
    (faces / "pairs.txt").write_text(f"{names[0]} {names[1]}\n{names[1]} zz_missing/x.jpg\n")  # sorted last
    output = tmp_path / "decisions.csv"
    common = ["verify", f"--model={model}", f"--calibration={card}", "--workers=0"]
    counts = run_tool([*common, f"--pairs={faces / 'pairs.txt'}", "--batch_size=2", f"--output={output}"])
    assert counts["pairs"] == 2 and counts["scored"] == 1
    table = pd.read_csv(output, keep_default_na=False)
    assert table["decision"][1] == "not scored" and "zz_missing" in table["problem"][1]
    (faces / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(BadDataError, match=r"cannot verify: .*broken.jpg: not an image"):
        run_tool([*common, f"--image1={faces / 'broken.jpg'}", f"--image2={faces / 'broken.jpg'}"])


def test_lfw_view1_pairs_files_are_read_as_lfw_pairs(tmp_path):
    """LFW's pairsDevTrain.txt / pairsDevTest.txt (header '<n>', then 'Name i j' and 'Name1 i Name2 j' lines) were
    refused at line 1: "expected two image paths 'left right', got '1100'"."""
    from amlit.inference.verify import read_pairs

    view1 = tmp_path / "pairsDevTest.txt"
    view1.write_text("1\nAaron_Peirsol\t1\t2\nAJ_Cook\t1\tMarsha_Thomason\t1\n")
    assert read_pairs(view1) == (
        ["Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "AJ_Cook/AJ_Cook_0001.jpg"],
        ["Aaron_Peirsol/Aaron_Peirsol_0002.jpg", "Marsha_Thomason/Marsha_Thomason_0001.jpg"],
    )
    plain = tmp_path / "plain.txt"  # two paths per line still win, with TABs keeping spaces inside names
    plain.write_text("a 1\tb 2\nc.jpg d.jpg\n")
    assert read_pairs(plain) == (["a 1", "c.jpg"], ["b 2", "d.jpg"])
    (tmp_path / "bad.txt").write_text("a.jpg b.jpg c.jpg\n")
    with pytest.raises(BadDataError, match=r"bad.txt:1: expected two image paths 'left right' \(or an LFW pairs"):
        read_pairs(tmp_path / "bad.txt")


def test_export_settings_are_checked_before_any_work():
    for flags, message in (
        (["--opset=16"], "--opset must be >= 17"),
        (["--flip_sum=false"], "--normalize=true needs --flip_sum=true"),
        (["--output=model.pt"], "--output must name an .onnx file"),
    ):
        with pytest.raises(ConfigError, match=message):
            run_tool(["export", "onnx", "--checkpoint=missing.ckpt", "--output=model.onnx", *flags])


def test_verify_refuses_an_output_that_is_its_pairs_file(tmp_path):
    from amlit.errors import StorageError

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a.jpg b.jpg\n")
    with pytest.raises(StorageError, match="it is the --pairs file"):
        run_tool(["verify", "--model=missing.ckpt", f"--pairs={pairs}", f"--output={pairs}"])
    assert pairs.read_text() == "a.jpg b.jpg\n"


def test_export_refuses_a_folder_whose_model_card_is_another_s(tmp_path):
    """It writes model_card.json beside the .onnx: into amlit test's results folder it replaced the test's card
    (evaluation and calibrated thresholds), beside another export that one's card. Refused before any work."""
    card = tmp_path / "model_card.json"
    tested = {"weights_sha256": "ab", "evaluation": {"metrics": {}}, "calibration": {"sets": {}}, "export": None}
    for content, owner in ((tested, "the card amlit test wrote"), ({**tested, "export": {"file": "a.onnx"}}, "a.onnx")):
        card.write_text(json.dumps(content))
        with pytest.raises(ConfigError, match=f"{owner}.*one export per folder"):
            run_tool(["export", "onnx", "--checkpoint=missing.ckpt", f"--output={tmp_path / 'model.onnx'}"])
        assert json.loads(card.read_text()) == content
    # a new export of the same file replaces its own card: past this check (to the missing checkpoint)
    card.write_text(json.dumps({**tested, "export": {"file": "model.onnx"}}))
    with pytest.raises(Exception, match=r"missing\.ckpt") as refused:
        run_tool(["export", "onnx", "--checkpoint=missing.ckpt", f"--output={tmp_path / 'model.onnx'}"])
    assert "one export per folder" not in str(refused.value)


def _embed(model: Path, faces: Path, tmp_path: Path) -> Path:
    output = tmp_path / "embedded.npz"
    if not output.exists():
        run_tool(["embed", f"--model={model}", f"--images={faces}", f"--output={output}", "--workers=0"])
    return output
