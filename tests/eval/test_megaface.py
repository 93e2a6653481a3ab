"""MegaFace challenge 1: hand-computed planted sets, brute-force float64 numpy, chunking, devkit files and the CLI."""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import pytest
import torch

from amlit.cli import run_tool
from amlit.errors import BadDataError, ConfigError, MissingDataError
from amlit.eval.embeddings import read_embeddings
from amlit.eval.far import calibration_impostors_needed, far_count
from amlit.eval.megaface import (
    evaluate_megaface,
    histogram_bins,
    identity_labels,
    identity_of,
    read_feature_file,
    read_features,
    read_identity_names,
    read_image_list,
    scan_distractors,
    select_identities,
    write_feature_file,
    write_features,
)
from amlit.keys import far_key

# ---------------------------------------------------------------- a planted set, answers worked out by hand

# Identity A: a1, a2; identity B: b1, b2. Distractor d1 is a copy of a2, so s(a1, d1) ties the mate score s(a1, a2).
PLANTED_PROBES = torch.tensor(
    [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0], [0.0, 0.8, 0.6]], dtype=torch.float64
)  # a1, a2, b1, b2
PLANTED_LABELS = torch.tensor([0, 0, 1, 1])
PLANTED_DISTRACTORS = torch.tensor([[0.6, 0.8, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)  # d1, d2


def planted(**kwargs):
    copy = r"1 of the 4 probes have a distractor at cosine >= 0\.9999 \(e\.g\. probe 1\)"  # d1: said, still scored
    with pytest.warns(UserWarning, match=copy):
        return evaluate_megaface(
            PLANTED_PROBES, PLANTED_LABELS, PLANTED_DISTRACTORS, device="cpu", progress=False, **kwargs
        )


def test_planted_identification_counts_a_tied_distractor_against_the_probe():
    # Mate scores are all 0.6. Distractor scores per probe: a1 (0.6, 0), a2 (1.0, 0.8), b1 (0, 0), b2 (0.64, 0.8).
    # Trials and ranks (1 + #distractors >= mate): (a1|a2) 2 (the tie), (a2|a1) 3, (b1|b2) 1, (b2|b1) 3.
    result = planted(far=0.5)
    assert result["rank1"] == pytest.approx(1 / 4)
    np.testing.assert_allclose(result["cmc"].y, [1 / 4, 2 / 4, 1, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(result["cmc"].x, np.arange(1, 11))
    assert result["num_identification_trials"] == 4 and result["num_genuine_pairs"] == 2


@pytest.mark.parametrize(
    ("far", "far_rule", "expected"),
    [
        # Impostors (8) descending: 1.0, 0.8, 0.8, 0.64, 0.6, 0, 0, 0; genuine: 0.6, 0.6.
        (0.25, "at_most", 0.0),  # k = 2: accept > 0.8
        (0.5, "at_most", 0.0),  # k = 4: accept > 0.6; the genuine 0.6 ties the impostor 0.6 and is rejected
        (0.625, "at_most", 1.0),  # k = 5: accept > 0
        (0.5625, "at_most", 0.0),  # 4.5 false accepts allowed: still the k = 4 point
        (0.5625, "interpolated", 0.5),  # halfway between TAR_4 = 0 and TAR_5 = 1
        (0.6, "interpolated", 0.8),  # 4.8 / 8: 0.8 of the way
        (0.5, "interpolated", 0.0),  # on a point: interpolated and at_most agree
        (0.25, "evalroc", 0.0),  # round(2) = 2: accept >= the 2nd largest, 0.8
        (0.5, "evalroc", 0.0),  # round(4) = 4: accept >= 0.64
        (0.625, "evalroc", 1.0),  # round(5) = 5: accept >= 0.6, the tied genuine scores too
        (0.5625, "evalroc", 1.0),  # round(4.5) = 5 (half away from zero)
        (0.0, "evalroc", 0.0),  # round(0) = 0: accept > the largest impostor, 1.0
    ],
)
def test_planted_tar_at_far_between_scores(far, far_rule, expected):
    result = planted(far=far, far_rule=far_rule)
    name = {0.25: "2.5e-1", 0.5: "5e-1", 0.625: "6.25e-1", 0.5625: "5.625e-1", 0.6: "6e-1", 0.0: "0e+0"}[far]
    assert [key for key in result if key.startswith("tar@far=")] == [f"tar@far={name}"]
    assert result[f"tar@far={name}"] == pytest.approx(expected)


def test_default_keys_and_far_count_is_exact_decimal():
    result = planted()
    assert {"rank1", "tar@far=1e-6", "cmc", "roc"} <= set(result)
    assert far_count(1e-6, 3530 * 1_000_000) == 3530  # float 1e-6 * 3.53e9 is 3529.9999999999995
    assert far_count(0.1, 30) == 3  # 0.1 * 30 = 3.0000000000000004 in floats


def test_bad_settings_and_inputs_raise_user_errors():
    with pytest.raises(ConfigError, match="unknown FAR rule 'nearest'"):
        evaluate_megaface(PLANTED_PROBES, PLANTED_LABELS, PLANTED_DISTRACTORS, device="cpu", far_rule="nearest")
    with pytest.raises(ConfigError, match="FAR"):
        evaluate_megaface(PLANTED_PROBES, PLANTED_LABELS, PLANTED_DISTRACTORS, device="cpu", far=2.0)
    with pytest.raises(BadDataError, match="3-d but distractor features 2-d"):
        evaluate_megaface(PLANTED_PROBES, PLANTED_LABELS, PLANTED_DISTRACTORS[:, :2], device="cpu", progress=False)
    with pytest.raises(BadDataError, match="at least two probe images"):
        evaluate_megaface(PLANTED_PROBES, torch.arange(4), PLANTED_DISTRACTORS, device="cpu", progress=False)


# ---------------------------------------------------------------- brute force (dense float64 numpy)


def unit_rows(generator: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    x = generator.standard_normal((rows, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_set(seed: int, identities: int = 6, dim: int = 8, distractors: int = 300):
    """Probes clustered per identity (so mates often beat distractors), random counts 1..9 per identity."""
    generator = np.random.default_rng(seed)
    centers = unit_rows(generator, identities, dim)
    counts = generator.integers(1, 10, size=identities)
    labels = np.repeat(np.arange(identities), counts)
    probes = centers[labels] + 0.5 * generator.standard_normal((len(labels), dim)) / np.sqrt(dim)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    return probes, labels, unit_rows(generator, distractors, dim)


def brute_force(probes, labels, distractors, far, max_rank=10):
    """Every trial's rank, every genuine and impostor score; TAR from its definition (no top-k, no streaming)."""
    probe_scores = probes @ probes.T
    distractor_scores = probes @ distractors.T  # (P, N)
    ranks = [
        1 + np.sum(distractor_scores[p] >= probe_scores[p, g])
        for p in range(len(labels))
        for g in range(len(labels))
        if p != g and labels[p] == labels[g]
    ]
    cmc = np.array([np.mean(np.array(ranks) <= r) for r in range(1, max_rank + 1)])
    i, j = np.tril_indices(len(labels), k=-1)
    genuine = probe_scores[i, j][labels[i] == labels[j]]
    impostor = np.sort(distractor_scores.ravel())[::-1]
    # Operating points "accept s > tau" over tau = every impostor score: FAR_j = j / N, TAR_j = mean(gen > imp_(j+1)).
    point_far = np.arange(len(impostor)) / len(impostor)
    point_tar = np.array([np.mean(genuine > tau) for tau in impostor])
    at_most = point_tar[np.flatnonzero(point_far <= far + 1e-15)[-1]]
    linear = np.interp(far, point_far, point_tar)
    # BLUFR EvalROC: k = MATLAB round(far * N); accept >= the k-th largest impostor (k = 0: > the largest).
    product = far * len(impostor)
    k = int(np.floor(product)) + (product - np.floor(product) >= 0.5)
    evalroc = np.mean(genuine > impostor[0]) if k == 0 else np.mean(genuine >= impostor[k - 1])
    return cmc, at_most, linear, evalroc, genuine, impostor, point_far, point_tar


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("far", [1e-3, 0.0137, 0.1])
def test_matches_brute_force_on_random_features(seed, far):
    probes, labels, distractors = random_set(seed)
    cmc, at_most, linear, evalroc, *_ = brute_force(probes, labels, distractors, far)
    args = (torch.from_numpy(probes), torch.from_numpy(labels), torch.from_numpy(distractors))
    for far_rule, expected in (("at_most", at_most), ("interpolated", linear), ("evalroc", evalroc)):
        result = evaluate_megaface(*args, far=far, far_rule=far_rule, chunk=37, device="cpu", progress=False)
        np.testing.assert_allclose(result["cmc"].y, cmc, rtol=0, atol=1e-12)
        assert result[far_key(far)] == pytest.approx(expected, abs=1e-12)
    assert 0 < cmc[0] < 1 and 0 < at_most <= linear <= 1  # the check is not vacuous


def test_roc_curve_exact_part_and_histogram_part_match_brute_force():
    probes, labels, distractors = random_set(3)
    far, bins = 0.02, 50
    *_, genuine, impostor, point_far, point_tar = brute_force(probes, labels, distractors, far)
    result = evaluate_megaface(
        torch.from_numpy(probes),
        torch.from_numpy(labels),
        torch.from_numpy(distractors),
        far=far,
        roc_bins=bins,
        chunk=50,
        device="cpu",
        progress=False,
    )
    roc = result["roc"]
    exact = far_count(far, len(impostor)) + 2  # points kept from the top-k
    np.testing.assert_allclose(roc.x[:exact], point_far[:exact], rtol=0, atol=1e-15)
    np.testing.assert_allclose(roc.y[:exact], point_tar[:exact], rtol=0, atol=1e-12)
    # Beyond: thresholds at the bin edges e_b = -1 + 2b/B, accepting scores >= e_b.
    edges = -1 + 2 * np.arange(bins) / bins
    binned_far = np.array([np.mean(impostor >= e) for e in edges])
    binned_tar = np.array([np.mean(genuine >= e) for e in edges])
    beyond = binned_far > point_far[exact - 1]
    np.testing.assert_allclose(roc.x[exact:], binned_far[beyond][::-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(roc.y[exact:], binned_tar[beyond][::-1], rtol=0, atol=1e-12)
    assert roc.log_x and np.all(np.diff(roc.x) >= 0) and roc.x[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("far_rule", ["evalroc", "interpolated", "at_most"])
def test_chunked_equals_unchunked(far_rule):
    probes, labels, distractors = (torch.from_numpy(a) for a in random_set(4, distractors=65))
    probes, distractors = probes.float(), distractors.float()  # float32, as in real use

    def run(chunk):
        return evaluate_megaface(
            probes,
            labels,
            distractors,
            far=0.03,
            far_rule=far_rule,
            chunk=chunk,
            device="cpu",
            progress=False,
        )

    whole = run(10_000)
    for chunk in (1, 3, 64, 65):
        part = run(chunk)
        assert part["rank1"] == whole["rank1"] and part["tar@far=3e-2"] == whole["tar@far=3e-2"]
        np.testing.assert_array_equal(part["cmc"].y, whole["cmc"].y)
        np.testing.assert_array_equal(part["roc"].x, whole["roc"].x)
        np.testing.assert_array_equal(part["roc"].y, whole["roc"].y)


def test_tar_at_far_needs_enough_top_scores():
    from amlit.eval.far import tar_at_far

    for rule, needed in (("evalroc", 5), ("at_most", 6), ("interpolated", 7)):
        with pytest.raises(ValueError, match=f"need the {needed} largest impostor scores"):
            tar_at_far(torch.tensor([0.5]), torch.tensor([0.9]), num_impostors=100, far=0.05, rule=rule)


# ---------------------------------------------------------------- devkit feature files and lists


def test_feature_file_byte_layout_and_round_trip(tmp_path):
    feature = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    path = tmp_path / "a" / "Adam_Brody_420.png_amlit.bin"
    write_feature_file(path, feature)
    data = path.read_bytes()
    assert len(data) == 16 + 4 * 3
    assert struct.unpack("<4i", data[:16]) == (3, 1, 4, 5)  # rows = D, cols = 1, stride = 4, CV_32F
    assert struct.unpack("<3f", data[16:]) == (0.5, -1.25, 3.0)
    np.testing.assert_array_equal(read_feature_file(path), feature)
    assert read_feature_file(path).dtype == np.float32


def test_feature_file_errors(tmp_path):
    bad_type = tmp_path / "type.bin"
    bad_type.write_bytes(struct.pack("<4i", 2, 1, 4, 6) + struct.pack("<2f", 1, 2))  # CV_64F is not float32
    with pytest.raises(BadDataError, match=r"\(2, 1, 4, 6\); expected \(D, 1, 4, 5\)"):
        read_feature_file(bad_type)
    short = tmp_path / "short.bin"
    short.write_bytes(struct.pack("<4i", 3, 1, 4, 5) + struct.pack("<2f", 1, 2))
    with pytest.raises(BadDataError, match="expected 28"):
        read_feature_file(short)
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"\x00" * 8)
    with pytest.raises(BadDataError, match="16-byte header"):
        read_feature_file(tiny)
    with pytest.raises(MissingDataError, match="--\\*_root and --ending"):
        read_feature_file(tmp_path / "absent.bin")


def test_feature_tree_and_list_round_trip(tmp_path):
    images = ["Adam_Brody/Adam_Brody_1.png", "Adam_Brody/Adam_Brody_2.png", "FlickrFinal2/00/000/1.jpg"]
    features = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_features(images, features, tmp_path / "tree", "_x.bin", progress=False)
    assert (tmp_path / "tree" / "FlickrFinal2" / "00" / "000" / "1.jpg_x.bin").is_file()
    (tmp_path / "list.json").write_text(json.dumps({"path": images}))
    assert read_image_list(tmp_path / "list.json") == images
    np.testing.assert_array_equal(read_features(images, tmp_path / "tree", "_x.bin", progress=False), features)
    (tmp_path / "bad.json").write_text(json.dumps({"paths": images}))
    with pytest.raises(BadDataError, match="'path' array"):
        read_image_list(tmp_path / "bad.json")


def test_probe_identities_from_paths():
    assert identity_of("Adam_Brody/Adam_Brody_420.png") == "Adam_Brody"
    assert identity_of("J.K._Simmons_12.png") == "J.K._Simmons"
    labels, names = identity_labels(["B/B_1.png", "A/A_1.png", "B/B_2.png"])
    assert names == ["A", "B"] and labels.tolist() == [1, 0, 1]


def test_real_probe_identity_list(shared_data):
    names = read_identity_names(shared_data / "megaface" / "facescrub_set1_names_80.txt")
    assert len(names) == 80 == len(set(names)) and "Adam_Brody" in names and "J.K._Simmons" in names


# ---------------------------------------------------------------- the tool commands


def write_npz_sets(tmp_path):
    """A random MegaFace set (5 identities, 100 distractors) written as probes.npz and distractors.npz."""
    probes, labels, distractors = random_set(5, distractors=100)
    probe_names = [f"Id{label}/Id{label}_{i}.png" for i, label in enumerate(labels)]
    distractor_names = [f"FlickrFinal2/{i:03d}.jpg" for i in range(len(distractors))]
    np.savez(tmp_path / "probes.npz", names=np.array(probe_names), features=probes.astype(np.float32))
    np.savez(tmp_path / "distractors.npz", names=np.array(distractor_names), features=distractors.astype(np.float32))
    return probes, labels, distractors, probe_names, distractor_names


def test_cli_scores_npz_and_devkit_tree_alike_and_exports(tmp_path):
    probes, labels, distractors, probe_names, distractor_names = write_npz_sets(tmp_path)
    common = ["--far=0.01", "--device=cpu"]
    npz_inputs = [f"--probes={tmp_path / 'probes.npz'}", f"--distractors={tmp_path / 'distractors.npz'}"]
    from_npz = run_tool(["score", "megaface", *npz_inputs, f"--output={tmp_path / 'results.json'}", *common])
    cmc, _, _, evalroc, *_ = brute_force(probes, labels, distractors, 0.01)
    assert from_npz["rank1"] == pytest.approx(cmc[0]) and from_npz["tar@far=1e-2"] == pytest.approx(evalroc, abs=1e-6)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rank1"] == from_npz["rank1"] and len(saved["cmc"]["y"]) == 10

    # Export to devkit trees, then score from the devkit lists: same numbers.
    for kind, names in (("probes", probe_names), ("distractors", distractor_names)):
        (tmp_path / f"{kind}.json").write_text(json.dumps({"path": names}))
        paths = [f"--embeddings={tmp_path / f'{kind}.npz'}", f"--output_root={tmp_path / kind}"]
        written = run_tool(["export", "megaface", *paths, f"--image_list={tmp_path / f'{kind}.json'}"])
        assert written == len(names)
    probe_tree = [f"--probes={tmp_path / 'probes.json'}", f"--probe_root={tmp_path / 'probes'}"]
    distractor_tree = [
        f"--distractors={tmp_path / 'distractors.json'}",
        f"--distractor_root={tmp_path / 'distractors'}",
    ]
    from_tree = run_tool(["score", "megaface", *probe_tree, *distractor_tree, *common])
    assert from_tree == pytest.approx(from_npz)
    with pytest.raises(ConfigError, match="--probe_root"):
        run_tool(["score", "megaface", f"--probes={tmp_path / 'probes.json'}", f"--distractors={tmp_path / 'x.npz'}"])


def test_export_refuses_names_that_leave_the_output_root_before_writing_anything(tmp_path):
    names = ["a/1.jpg", "../../escaped.jpg", f"{tmp_path}/x/abs.jpg", "b/../../up.jpg", "c/../fine.jpg"]
    features = np.random.default_rng(0).standard_normal((len(names), 8)).astype(np.float32)
    np.savez(tmp_path / "e.npz", names=np.array(names), features=features)
    out = tmp_path / "deep" / "er" / "out"
    args = ["export", "megaface", f"--embeddings={tmp_path / 'e.npz'}", f"--output_root={out}"]
    outside = r"3 image name\(s\) would be written outside .*'../../escaped.jpg', "
    with pytest.warns(UserWarning, match="not L2-normalized"), pytest.raises(BadDataError, match=outside):
        run_tool(args)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["e.npz"]


def test_cli_refuses_one_file_as_both_sets_and_warns_of_probes_among_the_distractors_or_swapped_sets(tmp_path):
    probes, labels, distractors, probe_names, distractor_names = write_npz_sets(tmp_path)
    # Copies of 3 probe images among the distractors: 2 under their file names, 1 under another name
    with_copies = np.vstack([distractors, probes[:3]]).astype(np.float32)
    copy_names = [*distractor_names, f"dup/{probe_names[0]}", f"dup/{probe_names[1]}", "renamed.jpg"]
    np.savez(tmp_path / "with_copies.npz", names=np.array(copy_names), features=with_copies)

    def score(probe_file, distractor_file):
        args = [f"--probes={tmp_path / probe_file}", f"--distractors={tmp_path / distractor_file}"]
        return run_tool(["score", "megaface", *args, "--far=0.01", "--device=cpu"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right inputs: no warning
        score("probes.npz", "distractors.npz")
    with pytest.raises(ConfigError, match=r"--probes and --distractors are the same features \(.*probes\.npz\)"):
        score("probes.npz", "./probes.npz")
    with pytest.warns(UserWarning, match="probe") as caught:
        result = score("probes.npz", "with_copies.npz")
    messages = [str(warning.message) for warning in caught]
    assert messages[0].startswith(
        f"2 distractors have the file name of a probe image (e.g. dup/{probe_names[0]}, dup/{probe_names[1]})"
    )
    assert messages[1].startswith(
        f"3 of the {len(probes)} probes have a distractor at cosine >= 0.9999 (e.g. {', '.join(probe_names[:3])})"
    )
    assert len(messages) == 2
    stored = probes.astype(np.float32).astype(np.float64)  # the features as the files hold them
    expected_cmc = brute_force(stored, labels, with_copies.astype(np.float64), 0.01)[0]
    assert result["rank1"] == pytest.approx(expected_cmc[0])  # the warnings change no number
    # Swapped, these distractors (all in one folder) would be probes of one identity: refused before the warning.
    with pytest.raises(BadDataError, match=r"one identity, 'FlickrFinal2'.* swapped"):
        score("distractors.npz", "probes.npz")
    foldered = [f"FlickrFinal2/{i % 7}/{i:03d}.jpg" for i in range(len(distractors))]  # the real set's layout
    np.savez(tmp_path / "foldered.npz", names=np.array(foldered), features=distractors.astype(np.float32))
    with pytest.warns(UserWarning, match=rf"more probes \(100\) than distractors \({len(probes)}\).* swapped"):
        score("foldered.npz", "probes.npz")


def test_a_far_below_what_the_impostors_can_measure_is_warned_of(tmp_path):
    """tar@far=1e-6 over a few thousand impostor pairs (the devkit's small distractor sets) is the TAR at zero
    false accepts, and was printed like the 1M-distractor figure without a word."""
    write_npz_sets(tmp_path)
    inputs = [f"--probes={tmp_path / 'probes.npz'}", f"--distractors={tmp_path / 'distractors.npz'}"]
    with pytest.warns(UserWarning, match=r"\d+ impostor pairs cannot measure FAR 1e-06 .*TAR at zero false accepts"):
        run_tool(["score", "megaface", *inputs, "--device=cpu"])


def test_export_refuses_names_with_backslashes_before_writing_anything(tmp_path):
    """Adam\\Adam_1.png (names saved on Windows) was written as one file of that name at the root, where the
    devkit, looking for Adam/Adam_1.png<ending>, does not find it."""
    names = np.array(["Adam\\Adam_1.png", "Adam\\Adam_2.png"])
    np.savez(tmp_path / "win.npz", names=names, features=np.eye(2, 4, dtype=np.float32))
    args = ["export", "megaface", f"--embeddings={tmp_path / 'win.npz'}", f"--output_root={tmp_path / 'out'}"]
    with pytest.raises(BadDataError, match=r"win\.npz: 2 image names separate folders with '\\'"):
        run_tool(args)
    assert not (tmp_path / "out").exists()


def test_probes_under_one_common_folder_are_refused_not_scored_as_one_identity(tmp_path):
    """Probes named aligned/<Name>_<n>.png all took the identity 'aligned': every probe pair was scored as genuine
    and numbers were printed."""
    probes, _, _, probe_names, _ = write_npz_sets(tmp_path)
    flat = [f"aligned/{name.replace('/', '_')}" for name in probe_names]
    np.savez(tmp_path / "flat.npz", names=np.array(flat), features=probes.astype(np.float32))
    inputs = [f"--probes={tmp_path / 'flat.npz'}", f"--distractors={tmp_path / 'distractors.npz'}"]
    with pytest.raises(BadDataError, match=r"flat\.npz: all \d+ probes are of one identity, 'aligned'"):
        run_tool(["score", "megaface", *inputs, "--far=0.01", "--device=cpu"])


def test_embeddings_file_errors_and_identity_selection(tmp_path):
    np.savez(tmp_path / "wrong.npz", images=np.array(["a"]), features=np.zeros((1, 2), np.float32))
    with pytest.raises(BadDataError, match="'names' and 'features'"):
        read_embeddings(tmp_path / "wrong.npz")
    with pytest.raises(MissingDataError, match="amlit predict"):
        read_embeddings(tmp_path / "absent.npz")
    (tmp_path / "ids.txt").write_text("# two of the three identities\nA\nC\n")
    names = ["A/A_1.png", "B/B_1.png", "C/C_1.png", "A/A_2.png"]
    assert select_identities(names, tmp_path / "ids.txt").tolist() == [True, False, True, True]
    with pytest.raises(BadDataError, match=r"1 identities .* have no probe image"):
        select_identities(names[:2], tmp_path / "ids.txt")


def test_rank1_by_distractor_count_on_nested_subsets_matches_brute_force():
    """rank1@distractors=n is the brute-force rank-1 on the first n distractors of one seeded permutation; counts
    at or above the available number are left out; the curve ends at all distractors with ``rank1``."""
    probes, labels, distractors = random_set(7, identities=8, distractors=1500)
    counts = (10, 100, 1000, 10_000)
    result = evaluate_megaface(
        *(torch.from_numpy(a) for a in (probes, labels, distractors)),
        distractor_counts=counts,
        distractor_seed=3,
        chunk=64,  # the chunks must also end on 10, 100, 1000
        device="cpu",
        progress=False,
    )
    order = np.random.default_rng(3).permutation(len(distractors))
    for n in (10, 100, 1000):
        expected = brute_force(probes, labels, distractors[order[:n]], far=1e-3)[0]
        assert result[f"rank1@distractors={n}"] == pytest.approx(expected[0]), n
    assert "rank1@distractors=10000" not in result  # more than the 1,500 available
    curve = result["rank1_vs_distractors"]
    assert curve.x.tolist() == [10, 100, 1000, 1500] and curve.log_x
    assert curve.y[-1] == result["rank1"] == pytest.approx(brute_force(probes, labels, distractors, far=1e-3)[0][0])
    assert np.all(np.diff(curve.y) <= 0) and curve.y[0] > curve.y[-1]  # nested: more distractors never help
    # another seed draws other subsets
    other = evaluate_megaface(
        *(torch.from_numpy(a) for a in (probes, labels, distractors)),
        distractor_counts=counts,
        distractor_seed=4,
        device="cpu",
        progress=False,
    )
    assert [other[f"rank1@distractors={n}"] for n in (10, 100)] != [result[f"rank1@distractors={n}"] for n in (10, 100)]


def test_roc_curve_middle_points_read_the_kept_impostor_scores():
    # FAR 1e-4 of 63k impostor scores: 8 exact points; the calibrated thresholds keep the 63 largest (FAR 1e-3),
    # from which log-spaced points continue the curve
    probes, labels, distractors = random_set(8, distractors=3000)
    far = 1e-4
    *_, impostor, point_far, point_tar = brute_force(probes, labels, distractors, far)
    result = evaluate_megaface(
        *(torch.from_numpy(a) for a in (probes, labels, distractors)),
        far=far,
        chunk=500,
        distractor_counts=(),
        device="cpu",
        progress=False,
    )
    exact = far_count(far, len(impostor)) + 2
    kept = calibration_impostors_needed(len(impostor))
    assert kept > exact + 10  # there is a middle part
    roc = result["roc"]
    j = np.round(roc.x * len(impostor)).astype(int)
    points = j[roc.x < kept / len(impostor)]
    assert points[:exact].tolist() == list(range(exact)) and len(points) > exact + 10
    assert np.all(np.diff(points) > 0) and points[-1] == kept - 1
    np.testing.assert_allclose(roc.x[: len(points)], point_far[points], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(roc.y[: len(points)], point_tar[points])


def test_roc_histogram_holds_the_scores_of_the_first_distractors_scanned():
    probes, _, distractors = (torch.from_numpy(a) for a in random_set(9, distractors=400))
    num_probes = len(probes)
    scan = scan_distractors(
        probes,
        distractors,
        num_top_impostors=10,
        counts=[100],
        seed=2,
        roc_bins=50,
        roc_sample_scores=37 * num_probes + 1,  # -> the first 38 distractors of the scan order
        chunk=1000,
        device="cpu",
        progress=False,
    )
    assert scan.sampled_impostors == 38 * num_probes
    order = torch.from_numpy(np.random.default_rng(2).permutation(len(distractors)))
    scores = probes.float() @ distractors[order[:100]].float().T  # the first piece, as scanned: float32
    expected = torch.bincount(histogram_bins(scores[:, :38], 50).reshape(-1), minlength=50)
    assert torch.equal(scan.sampled_histogram, expected)
