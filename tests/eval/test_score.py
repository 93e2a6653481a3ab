import json

import numpy as np
import pytest
import torch

from amlit.cli import run_tool
from amlit.errors import BadDataError, MissingDataError
from amlit.eval.blufr import evaluate_blufr, read_blufr_config
from amlit.eval.pairs import read_lfw_pairs
from amlit.eval.verification import pair_verification_metrics


def _embeddings(names, seed=0, dim=16):
    features = torch.nn.functional.normalize(
        torch.randn(len(names), dim, generator=torch.Generator().manual_seed(seed))
    )
    return features


def test_score_lfw_matches_protocol_on_shuffled_names_and_writes_json(tiny_tree, tmp_path, capsys):
    pairs_file = tiny_tree / "lfw" / "pairs.txt"
    pairs = read_lfw_pairs(pairs_file)
    features = _embeddings(pairs.images)
    # Identity signal, so accuracy is not at chance: add a per-person direction.
    people = sorted({p.split("/")[0] for p in pairs.images})
    direction = _embeddings(people, seed=1)
    features = torch.nn.functional.normalize(
        features + 2 * direction[[people.index(p.split("/")[0]) for p in pairs.images]]
    )
    expected = pair_verification_metrics(features, pairs)
    order = np.random.default_rng(0).permutation(len(pairs.images))  # the file's order is not the protocol's
    npz = tmp_path / "emb.npz"
    np.savez(npz, names=np.array(pairs.images)[order], features=features.numpy()[order])
    output = tmp_path / "lfw.json"
    result = run_tool(["score", "lfw", f"--embeddings={npz}", f"--pairs={pairs_file}", f"--output={output}"])
    assert result["lfw/acc"] == pytest.approx(expected["acc"]) and expected["acc"] > 0.7
    assert json.loads(output.read_text()) == result
    assert f"lfw/acc: {expected['acc']:.6f}" in capsys.readouterr().out


def test_score_blufr_matches_protocol_and_matches_names_by_file_name(tiny_tree, tmp_path):
    config_file = tiny_tree / "lfw" / "blufr_config.mat"
    config = read_blufr_config(config_file)
    features = _embeddings(config.image_list)
    npz = tmp_path / "emb.npz"
    folders = [f"{n.rsplit('_', 1)[0]}/{n}" for n in config.image_list]  # paths with folders, as predict writes
    np.savez(npz, names=np.array(folders), features=features.numpy())
    result = run_tool(["score", "blufr", f"--embeddings={npz}", f"--blufr_config={config_file}"])
    expected = evaluate_blufr((config.image_list, features), config)
    assert result == {f"blufr/{key}": pytest.approx(value) for key, value in expected.items()}


def test_bad_embeddings_files_are_explained(tmp_path):
    from amlit.eval.score import read_embeddings

    with pytest.raises(MissingDataError, match="amlit predict"):
        read_embeddings(tmp_path / "none.npz")
    np.savez(tmp_path / "a.npz", features=np.zeros((2, 3)))
    with pytest.raises(BadDataError, match=r"expected an amlit embeddings \.npz with 'names'"):
        read_embeddings(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", names=np.array(["x", "y"]), features=np.zeros((3, 3)))
    with pytest.raises(BadDataError, match=r"names \(2,\) and features \(3, 3\) do not match"):
        read_embeddings(tmp_path / "b.npz")
