import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from amlit.cli import run_tool
from amlit.errors import BadDataError, MissingDataError
from amlit.eval.blufr import evaluate_blufr, read_blufr_config, write_blufr_config
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


def test_score_blufr_records_the_trial_count_and_warns_of_a_config_with_other_than_10(tiny_tree, tmp_path, capsys):
    official_size = tiny_tree / "lfw" / "blufr_config.mat"  # generated with the official config's 10 trials
    config = read_blufr_config(official_size)
    npz = tmp_path / "emb.npz"
    np.savez(npz, names=np.array(config.image_list), features=_embeddings(config.image_list).numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 10 trials: no warning
        result = run_tool(["score", "blufr", f"--embeddings={npz}", f"--blufr_config={official_size}"])
    assert result["blufr/num_trials"] == 10 and "BLUFR: 10 trials" in capsys.readouterr().out
    small = tmp_path / "three_trials.mat"
    cells = ("train_index", "test_index", "gallery_index", "probe_index")
    write_blufr_config(small, replace(config, **{cell: getattr(config, cell)[:3] for cell in cells}))
    output = tmp_path / "blufr.json"
    with pytest.warns(UserWarning, match=r"three_trials\.mat has 3 trials, the official .* has 10: these are not"):
        result = run_tool(["score", "blufr", f"--embeddings={npz}", f"--blufr_config={small}", f"--output={output}"])
    assert result["blufr/num_trials"] == 3 and json.loads(output.read_text())["blufr/num_trials"] == 3
    printed = capsys.readouterr().out
    assert "BLUFR: 3 trials" in printed and "blufr/num_trials: 3.000000" in printed


def test_bad_embeddings_files_are_explained(tmp_path):
    from amlit.eval.embeddings import read_embeddings

    with pytest.raises(MissingDataError, match="amlit predict"):
        read_embeddings(tmp_path / "none.npz")
    np.savez(tmp_path / "a.npz", features=np.zeros((2, 3)))
    with pytest.raises(BadDataError, match=r"expected an amlit embeddings \.npz with 'names'"):
        read_embeddings(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", names=np.array(["x", "y"]), features=np.zeros((3, 3)))
    with pytest.raises(BadDataError, match=r"names \(2,\) and features \(3, 3\) do not match"):
        read_embeddings(tmp_path / "b.npz")
    (tmp_path / "empty.npz").write_bytes(b"")  # np.load raises EOFError on it, no OSError/ValueError
    with pytest.raises(BadDataError, match=r"empty\.npz is empty \(0 bytes\)"):
        read_embeddings(tmp_path / "empty.npz")


def test_object_arrays_are_refused_naming_the_array_and_the_fix(tmp_path):
    """Names saved as a list of Path objects (an object array) gave only numpy's "Object arrays cannot be loaded
    when allow_pickle=False": not which array, nor what to do."""
    from amlit.eval.embeddings import read_embeddings

    names = np.array([Path("A/A_1.jpg"), Path("B/B_1.jpg")], dtype=object)
    np.savez(tmp_path / "paths.npz", names=names, features=np.ones((2, 3), np.float32))
    with pytest.raises(BadDataError, match=r"paths\.npz: 'names' is an object array.*np\.array\(\[str\(n\)"):
        read_embeddings(tmp_path / "paths.npz")


def test_complex_features_are_refused_not_cut_to_their_real_part(tmp_path):
    from amlit.eval.embeddings import read_embeddings

    np.savez(tmp_path / "c.npz", names=np.array(["a", "b"]), features=np.ones((2, 3), np.complex64) * 1j)
    with pytest.raises(BadDataError, match=r"c\.npz: features are complex64, expected real numbers"):
        read_embeddings(tmp_path / "c.npz")


def test_a_folder_given_for_an_input_file_is_named_as_a_folder(tmp_path):
    """--embeddings/--pairs/--blufr_config naming a folder were reported as not found / not existing."""
    from amlit.eval.embeddings import read_embeddings

    for read in (read_embeddings, read_lfw_pairs, read_blufr_config):
        with pytest.raises(BadDataError, match=rf"{tmp_path} is a folder; "):
            read(tmp_path)


def test_npy_and_truncated_embeddings_files_are_refused(tmp_path):
    """A bare .npy saved under an .npz name and a truncated archive gave tracebacks (TypeError, BadZipFile)."""
    from amlit.eval.embeddings import read_embeddings

    with open(tmp_path / "bare.npz", "wb") as handle:  # np.save would append .npy to the name
        np.save(handle, np.zeros((4, 3), np.float32))
    with pytest.raises(BadDataError, match=r"bare\.npz holds one bare array \(4, 3\), not an \.npz archive"):
        read_embeddings(tmp_path / "bare.npz")
    np.savez(tmp_path / "whole.npz", names=np.array(["a", "b"]), features=np.ones((2, 3), np.float32))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:200])
    with pytest.raises(BadDataError, match=r"cut\.npz is not a readable \.npz"):
        read_embeddings(tmp_path / "cut.npz")


def test_byte_string_names_are_decoded(tiny_tree, tmp_path):
    npz, pairs_file, names, unit = _lfw_file(tiny_tree, tmp_path)
    as_bytes = tmp_path / "bytes.npz"
    np.savez(as_bytes, names=np.array([name.encode() for name in names]), features=unit)
    assert np.load(as_bytes)["names"].dtype.kind == "S"
    expected = run_tool(["score", "lfw", f"--embeddings={npz}", f"--pairs={pairs_file}"])
    assert run_tool(["score", "lfw", f"--embeddings={as_bytes}", f"--pairs={pairs_file}"]) == expected


def test_names_matching_nothing_say_why(tiny_tree, tmp_path):
    _, pairs_file, names, unit = _lfw_file(tiny_tree, tmp_path)
    png = tmp_path / "png.npz"
    np.savez(png, names=np.array([name.replace(".jpg", ".png") for name in names]), features=unit)
    why = r"its names end in \.png \(e\.g\. \S+\.png\) but the protocol names \.jpg files"
    with pytest.raises(BadDataError, match=rf"none of the images .* is among its names; {why}"):
        run_tool(["score", "lfw", f"--embeddings={png}", f"--pairs={pairs_file}"])
    other = tmp_path / "other.npz"
    np.savez(other, names=np.array([f"x/{k}.jpg" for k in range(len(names))]), features=unit)
    with pytest.raises(BadDataError, match=r"is among its names; its names look like x/0\.jpg"):
        run_tool(["score", "lfw", f"--embeddings={other}", f"--pairs={pairs_file}"])
    config_file = tiny_tree / "lfw" / "blufr_config.mat"
    with pytest.raises(BadDataError, match=r"have no feature .*\(its names end in \.png"):
        run_tool(["score", "blufr", f"--embeddings={png}", f"--blufr_config={config_file}"])


# ---- embeddings from elsewhere: scored right or refused, by every protocol ------------------------------------
def _lfw_file(tiny_tree, tmp_path, scale=None, signal=2.0):
    """An embeddings file of the tiny LFW pairs' images with identity signal; rows optionally scaled (features made
    elsewhere are often not unit length). Returns (npz, pairs file, names, unit features)."""
    pairs_file = tiny_tree / "lfw" / "pairs.txt"
    names = read_lfw_pairs(pairs_file).images
    people = sorted({p.split("/")[0] for p in names})
    direction = _embeddings(people, seed=1)
    unit = torch.nn.functional.normalize(
        _embeddings(names) + signal * direction[[people.index(p.split("/")[0]) for p in names]]
    ).numpy()
    stored = unit * scale[:, None] if scale is not None else unit
    npz = tmp_path / "emb.npz"
    np.savez(npz, names=np.array(names), features=stored.astype(np.float32))
    return npz, pairs_file, names, unit


def test_an_output_naming_an_input_is_refused_before_it_is_overwritten(tiny_tree, tmp_path):
    """--output=<the embeddings file> replaced hours of embedding with a JSON of the scores."""
    from amlit.errors import StorageError

    npz, pairs_file, _, _ = _lfw_file(tiny_tree, tmp_path)
    pairs_copy = tmp_path / "pairs.txt"
    pairs_copy.write_bytes(pairs_file.read_bytes())
    before = npz.read_bytes(), pairs_copy.read_bytes()
    for output, option in ((npz, "--embeddings"), (tmp_path / "." / "pairs.txt", "--pairs")):
        with pytest.raises(StorageError, match=f"it is the {option} file"):
            run_tool(["score", "lfw", f"--embeddings={npz}", f"--pairs={pairs_copy}", f"--output={output}"])
    assert (npz.read_bytes(), pairs_copy.read_bytes()) == before
    with pytest.raises(StorageError, match="it is the --probes file"):
        run_tool(["score", "megaface", f"--probes={npz}", f"--distractors={npz}", f"--output={npz}"])
    assert npz.read_bytes() == before[0]


def test_features_that_are_not_unit_length_are_normalized_and_say_so(tiny_tree, tmp_path):
    scale = np.random.default_rng(2).uniform(0.2, 40.0, 2000)
    npz, pairs_file, names, unit = _lfw_file(tiny_tree, tmp_path, scale=scale[: len(read_lfw_pairs(
        tiny_tree / "lfw" / "pairs.txt").images)])  # fmt: skip
    unit_npz = tmp_path / "unit.npz"
    np.savez(unit_npz, names=np.array(names), features=unit)
    expected = run_tool(["score", "lfw", f"--embeddings={unit_npz}", f"--pairs={pairs_file}"])
    with pytest.warns(UserWarning, match=r"emb.npz: features are not L2-normalized \(norms .*\); normalized them"):
        scaled = run_tool(["score", "lfw", f"--embeddings={npz}", f"--pairs={pairs_file}"])
    assert scaled == pytest.approx(expected)
    assert expected["lfw/acc"] > 0.7  # not chance: normalization matters for this check


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("nan", r"1 feature rows hold NaN or Inf \(e\.g\. (?P<name>\S+)\)"),
        ("zero", r"1 feature rows are all zeros \(e\.g\. (?P<name>\S+)\)"),
        ("duplicate", r"1 image names appear more than once \(e\.g\. (?P<name>\S+)\)"),
        # ./A/A_1.jpg beside A/A_1.jpg: one image twice (MegaFace scored it as a genuine pair of cosine 1)
        ("dotted", r"1 image names appear more than once \(e\.g\. (?P<name>\S+)\)"),
    ],
)
@pytest.mark.parametrize("command", ["lfw", "blufr", "megaface"])
def test_rows_no_protocol_can_score_are_refused_by_every_command(tiny_tree, tmp_path, damage, message, command):
    config_file = tiny_tree / "lfw" / "blufr_config.mat"
    names = [f"{n.rsplit('_', 1)[0]}/{n}" for n in read_blufr_config(config_file).image_list]  # every LFW image
    features = _embeddings(names).numpy()
    victim = 5
    if damage == "nan":
        features[victim, 3] = np.nan
    elif damage == "zero":
        features[victim] = 0
    else:
        names = [*names, names[victim] if damage == "duplicate" else f"./{names[victim]}"]
        features = np.vstack([features, features[victim]])
    npz = tmp_path / "emb.npz"
    np.savez(npz, names=np.array(names), features=features)
    args = {
        "lfw": ["score", "lfw", f"--embeddings={npz}", f"--pairs={tiny_tree / 'lfw' / 'pairs.txt'}"],
        "blufr": ["score", "blufr", f"--embeddings={npz}", f"--blufr_config={config_file}"],
        "megaface": ["score", "megaface", f"--probes={npz}", f"--distractors={npz}", "--device=cpu"],
    }[command]
    with pytest.raises(BadDataError, match=message) as info:
        run_tool(args)
    assert names[victim] in str(info.value)


@pytest.mark.parametrize("command", ["lfw", "blufr", "megaface"])
def test_one_number_per_image_is_not_a_feature(tiny_tree, tmp_path, command):
    """(N, 1) "features" (a column of scores or labels saved by mistake) normalize to +-1: every protocol would run
    on cosines of +-1 and print a number as if it meant something."""
    config_file = tiny_tree / "lfw" / "blufr_config.mat"
    names = [f"{n.rsplit('_', 1)[0]}/{n}" for n in read_blufr_config(config_file).image_list]
    npz = tmp_path / "scores.npz"
    np.savez(npz, names=np.array(names), features=np.random.default_rng(0).normal(size=(len(names), 1)))
    args = {
        "lfw": ["score", "lfw", f"--embeddings={npz}", f"--pairs={tiny_tree / 'lfw' / 'pairs.txt'}"],
        "blufr": ["score", "blufr", f"--embeddings={npz}", f"--blufr_config={config_file}"],
        "megaface": ["score", "megaface", f"--probes={npz}", f"--distractors={npz}", "--device=cpu"],
    }[command]
    with pytest.raises(BadDataError, match=r"scores.npz: features have shape \(\d+, 1\); expected \(images, D\)"):
        run_tool(args)


def test_missing_images_are_refused_unless_asked_then_counted(tiny_tree, tmp_path):
    _, pairs_file, names, unit = _lfw_file(tiny_tree, tmp_path)
    pairs = read_lfw_pairs(pairs_file)
    victim = pairs.images[pairs.left[7]]
    kept = [k for k, name in enumerate(names) if name != victim]
    partial = tmp_path / "partial.npz"
    np.savez(partial, names=np.array(names)[kept], features=unit[kept])
    args = ["score", "lfw", f"--embeddings={partial}", f"--pairs={pairs_file}"]
    with pytest.raises(
        BadDataError, match=rf"1 of the {len(names)} images named by .*pairs.txt have no feature"
    ) as info:
        run_tool(args)
    assert f"first: {victim}, " in str(info.value) and "--allow_missing=true" in str(info.value)
    usable = int(((np.array(pairs.left) != names.index(victim)) & (np.array(pairs.right) != names.index(victim))).sum())
    with pytest.warns(UserWarning, match=rf"{usable} of the {len(pairs)} pairs have both images; scoring those"):
        result = run_tool([*args, "--allow_missing=true"])
    assert result["lfw/num_pairs"] == usable < len(pairs)


def test_allow_missing_refuses_what_is_left_when_it_cannot_be_scored(tiny_tree, tmp_path):
    """With --allow_missing=true, features of the matched pairs' images alone printed acc 1.0, and of no pair or
    one fold only num_pairs, as if scored."""
    _, pairs_file, names, unit = _lfw_file(tiny_tree, tmp_path)
    pairs = read_lfw_pairs(pairs_file)
    in_mismatched = set(pairs.left[~pairs.issame].tolist()) | set(pairs.right[~pairs.issame].tolist())
    first_fold = set(pairs.left[pairs.fold == 0].tolist()) | set(pairs.right[pairs.fold == 0].tolist())
    left_only = set(pairs.left.tolist()) - set(pairs.right.tolist())
    for rows, left in (
        ([k for k in range(len(names)) if k not in in_mismatched], "only matched pairs"),
        (sorted(first_fold), "the pairs of one fold"),
        (sorted(left_only), "none"),
    ):
        partial = tmp_path / "partial.npz"
        np.savez(partial, names=np.array(names)[rows], features=unit[rows])
        args = ["score", "lfw", f"--embeddings={partial}", f"--pairs={pairs_file}", "--allow_missing=true"]
        with pytest.raises(BadDataError, match=rf"pairs have both images: {left}, which 10-fold verification cannot"):
            run_tool(args)


def test_score_lfw_offers_sphereface_variant_and_the_far_rule(tiny_tree, tmp_path):
    from amlit.eval.verification import sphereface_kfold_accuracy

    npz, pairs_file, _, unit = _lfw_file(tiny_tree, tmp_path, signal=0.6)
    pairs = read_lfw_pairs(pairs_file)
    args = ["score", "lfw", f"--embeddings={npz}", f"--pairs={pairs_file}"]
    sphereface = run_tool([*args, "--protocol=sphereface"])
    expected = sphereface_kfold_accuracy(torch.from_numpy(unit), pairs)
    assert sphereface["lfw/acc"] == pytest.approx(expected.mean)
    assert sphereface["lfw/threshold"] != run_tool(args)["lfw/threshold"]  # centering moves the chosen threshold
    at_most = run_tool([*args, "--far_rule=at_most"])
    assert set(at_most) == set(run_tool(args))


def test_every_module_imports_first_in_a_fresh_process():
    """Import order must not matter (importing amlit.eval.megaface_files first once failed with a circular import):
    each module is imported with every amlit module unloaded before."""
    import importlib
    import pkgutil
    import sys

    import amlit

    modules = [m.name for m in pkgutil.walk_packages(amlit.__path__, "amlit.") if m.name != "amlit.__main__"]
    assert len(modules) > 30
    saved = {name: module for name, module in sys.modules.items() if name == "amlit" or name.startswith("amlit.")}
    try:
        for name in modules:
            for loaded in [n for n in sys.modules if n == "amlit" or n.startswith("amlit.")]:
                del sys.modules[loaded]
            importlib.import_module(name)
    finally:
        for loaded in [n for n in sys.modules if n == "amlit" or n.startswith("amlit.")]:
            del sys.modules[loaded]
        sys.modules.update(saved)
