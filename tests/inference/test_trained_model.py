"""A model trained and tested by amlit, then used: its record, model card, embed -> verify against amlit test's own
scores, and the ONNX export (parity at batch sizes 1 and 7, embed/verify on the .onnx)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from inference_helpers import train_and_test

from amlit.cli import run_tool
from amlit.data.align import TEMPLATES
from amlit.inference.models import load_model, onnx_session
from amlit.inference.network import EmbeddingNet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tested_run(tmp_path_factory):
    return train_and_test(tmp_path_factory.mktemp("tested-run"))


@pytest.fixture(scope="module")
def exported(tested_run, tmp_path_factory):
    """The checkpoint exported with the calibration amlit test wrote: (path, what export_onnx returned)."""
    output = tmp_path_factory.mktemp("export") / "model.onnx"
    card = tested_run.results / "model_card.json"
    result = run_tool(["export", "onnx", f"--checkpoint={tested_run.checkpoint}", f"--output={output}",
                       f"--calibration={card}"])  # fmt: skip
    return output, result


def test_the_record_written_at_fit_time(tested_run):
    record = torch.load(tested_run.checkpoint, weights_only=True)["amlit_inference"]
    assert record["backbone"]["class_path"] == "amlit.backbones.sphereface.SphereFace"
    assert record["backbone"]["init_args"] == {
        "depth": 20, "embedding_dim": 128, "input_size": [112, 96], "width_multiplier": 0.125}  # fmt: skip
    assert record["input"]["alignment_template"]["name"] == "sphereface_112x96"
    assert record["input"]["alignment_template"]["points"] == [list(p) for p in TEMPLATES["sphereface_112x96"].points]
    assert (record["input"]["pixel_mean"], record["input"]["pixel_std"]) == (128.0, 128.0)
    manifest = record["training"]["manifest"]
    assert manifest["alignment_template"] == "sphereface_112x96" and len(manifest["train_listing_sha256"]) == 64
    assert record["training"]["global_step"] == 1
    assert record["training"]["config"]["model"]["head"]["init_args"]["margin"] == 0.35


def test_embed_then_verify_agrees_with_amlit_tests_own_scores(tested_run, tmp_path):
    output = tmp_path / "lfw.npz"
    run_tool(["embed", f"--model={tested_run.checkpoint}", f"--images={tested_run.lfw}", f"--output={output}"])
    decisions = tmp_path / "decisions.csv"
    card = tested_run.results / "model_card.json"
    run_tool(["verify", f"--model={tested_run.checkpoint}", f"--pairs={tested_run.lfw / 'pairs.txt'}",
              f"--calibration={card}", "--far=1e-3", f"--output={decisions}"])  # fmt: skip
    table = pd.read_csv(decisions)
    # the same cosines as amlit test computed for these pairs (in pairs.txt order)
    np.testing.assert_allclose(table["cosine"].to_numpy(), tested_run.lfw_scores, atol=2e-6)
    results = json.loads((tested_run.results / "results.json").read_text())
    threshold = results["test/megaface/threshold@far=1e-3"]  # the only set with >= 1,000 impostor pairs here
    assert results["test/megaface/num_impostors"] == 60 * 40
    assert table["decision"].tolist() == ["same" if c >= threshold else "different" for c in table["cosine"]]
    # and the embeddings file scores as amlit test did
    scored = run_tool(["score", "lfw", f"--embeddings={output}", f"--pairs={tested_run.lfw / 'pairs.txt'}"])
    assert scored["lfw/acc"] == pytest.approx(results["test/lfw/acc"])
    assert scored["lfw/auc"] == pytest.approx(results["test/lfw/auc"])


def test_amlit_test_writes_the_model_card(tested_run):
    card = json.loads((tested_run.results / "model_card.json").read_text())
    model = load_model(tested_run.checkpoint, "cpu")
    assert card["weights_sha256"] == model.weights_sha256
    assert card["parameters"] == sum(p.numel() for p in model.net.backbone.parameters())
    assert (
        card["input"]["image_size"] == [112, 96] and card["input"]["alignment_template"]["name"] == "sphereface_112x96"
    )
    assert card["training"]["global_step"] == 1 and card["training"]["manifest"]["num_classes"] == 12
    assert card["training"]["config"]["data"]["init_args"]["val_identities"] == 0
    results = json.loads((tested_run.results / "results.json").read_text())
    assert card["evaluation"]["table1"]["LFW accuracy (10 folds)"] == results["test/lfw/acc"]
    assert card["evaluation"]["table1"]["MegaFace TAR@FAR=1e-6"] == results["test/megaface/tar@far=1e-6"]
    assert card["calibration"]["sets"]["megaface"] == {
        "num_impostors": 2400,
        "thresholds": {"1e-3": results["test/megaface/threshold@far=1e-3"]},
    }
    assert card["license"] == "test license" and card["intended_use"] and card["known_limits"]
    markdown = (tested_run.results / "model_card.md").read_text()
    for section in ("## Model", "## Input", "## Training data", "## Evaluation", "## Calibrated thresholds",
                    "## License", "## Intended use", "## Known limits"):  # fmt: skip
        assert section in markdown
    assert "| megaface | 2,400 | 1e-3 |" in markdown and "generated demo faces" in markdown


def onnx_vs_torch(path, net: EmbeddingNet, batch: np.ndarray) -> tuple[float, float]:
    """(max |difference|, min cosine) of the .onnx and the torch net on one uint8 batch."""
    (got,) = onnx_session(path, "cpu").run(None, {"images": batch})
    with torch.no_grad():
        expected = net(torch.from_numpy(batch)).numpy()
    cosines = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    return float(np.abs(got - expected).max()), float(cosines.min())


def test_the_onnx_export_matches_pytorch_at_batch_sizes_1_and_7(tested_run, exported):
    path, result = exported
    parity = result["parity"]  # what the export checked and printed
    assert sorted({p["batch_size"] for p in parity}) == [1, 7]
    assert {p["what"] for p in parity} == {"random images", "JPEG faces"}
    assert all(p["min_cosine"] >= 0.9999 and p["max_abs_difference"] < 1e-4 for p in parity)
    session = onnx_session(path, "cpu")
    (graph_input,) = session.get_inputs()
    assert graph_input.type == "tensor(uint8)" and graph_input.shape[1:] == [112, 96, 3]
    assert isinstance(graph_input.shape[0], str)  # a dynamic batch
    net = load_model(tested_run.checkpoint, "cpu").net
    faces = sorted(tested_run.lfw.rglob("*.jpg"))[:7]
    import cv2

    real = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in faces])
    for batch in (real[:1], real, np.random.default_rng(5).integers(0, 256, (7, 112, 96, 3), dtype=np.uint8)):
        max_difference, min_cosine = onnx_vs_torch(path, net, batch)
        assert max_difference < 1e-4 and min_cosine >= 0.9999
    card = json.loads((path.parent / "model_card.json").read_text())
    assert card["export"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["export"]["opset"] >= 17 and card["export"]["input_format"] == "uint8_nhwc"


def test_embed_and_verify_run_the_export_alone(tested_run, exported, tmp_path, capsys):
    path, _ = exported
    for model, name in ((tested_run.checkpoint, "torch.npz"), (path, "onnx.npz")):
        run_tool(["embed", f"--model={model}", f"--images={tested_run.lfw}", f"--output={tmp_path / name}"])
    torch_file, onnx_file = np.load(tmp_path / "torch.npz"), np.load(tmp_path / "onnx.npz")
    assert onnx_file["names"].tolist() == torch_file["names"].tolist()
    np.testing.assert_allclose(onnx_file["features"], torch_file["features"], atol=1e-5)
    capsys.readouterr()
    # the export carries its calibration: no --calibration, nothing beside the checkpoint
    pairs = tested_run.lfw / "pairs.txt"
    run_tool(["verify", f"--model={path}", f"--pairs={pairs}", f"--output={tmp_path / 'onnx.csv'}"])
    assert f"from the model card inside {path}" in capsys.readouterr().out
    decided = pd.read_csv(tmp_path / "onnx.csv")
    np.testing.assert_allclose(decided["cosine"].to_numpy(), tested_run.lfw_scores, atol=1e-5)


def test_an_export_without_the_feature_inside_is_completed_outside(tested_run, tmp_path):
    output = tmp_path / "raw" / "model.onnx"
    run_tool(["export", "onnx", f"--checkpoint={tested_run.checkpoint}", f"--output={output}",
              "--input_format=float_nchw", "--flip_sum=false", "--normalize=false"])  # fmt: skip
    (graph_input,) = onnx_session(output, "cpu").get_inputs()
    assert graph_input.type == "tensor(float)" and graph_input.shape[1:] == [3, 112, 96]
    for model, name in ((tested_run.checkpoint, "torch.npz"), (output, "raw.npz")):
        run_tool(["embed", f"--model={model}", f"--images={tested_run.lfw}", f"--output={tmp_path / name}"])
    np.testing.assert_allclose(np.load(tmp_path / "raw.npz")["features"], np.load(tmp_path / "torch.npz")["features"],
                               atol=1e-5)  # fmt: skip
