import hashlib

from amlit.data.synthetic import SyntheticSpec, generate
from amlit.eval.pairs import read_lfw_pairs


def _digest(folder):
    h = hashlib.sha1()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "COMPLETE":
            h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


SPEC = SyntheticSpec(
    train_identities=3, images_per_identity=2, test_identities=20, test_images_per_identity=2, pairs_per_fold=1, seed=7
)


def test_generation_is_deterministic_and_cached(tmp_path):
    first = generate(tmp_path / "a", SPEC)
    second = generate(tmp_path / "b", SPEC)
    assert _digest(first) == _digest(second)
    stamp = (first / "casia").stat().st_mtime_ns
    assert generate(tmp_path / "a", SPEC) == first  # reused, not rebuilt
    assert (first / "casia").stat().st_mtime_ns == stamp
    assert _digest(generate(tmp_path / "c", SyntheticSpec(**{**SPEC.__dict__, "seed": 8}))) != _digest(first)
    assert not list((tmp_path / "a").glob(".*tmp*"))  # no staging folder left behind


def test_layout_is_casia_and_lfw_with_disjoint_identities(tiny_tree):
    casia = sorted(p for p in (tiny_tree / "casia").iterdir() if p.is_dir())
    assert len(casia) == 12
    assert all(len(p.name) == 7 and p.name.isdigit() for p in casia)
    assert sorted(f.name for f in casia[0].iterdir()) == [f"{n:03d}.jpg" for n in range(1, 7)]
    pairs = read_lfw_pairs(tiny_tree / "lfw" / "pairs.txt")
    assert pairs.num_folds == 10 and len(pairs) == 40
    assert all((tiny_tree / "lfw" / p).is_file() for p in pairs.images)
    test_names = {p.split("/")[0] for p in pairs.images}
    train_names = {line.split()[1] for line in (tiny_tree / "casia" / "names.txt").read_text().splitlines()}
    assert not test_names & train_names


def test_faces_narrower_than_the_template_are_drawn_resized():
    """--data.image_size=[64,64] on the demo data crashed inside OpenCV (a negative border) while generating."""
    import numpy as np

    from amlit.data.synthetic import random_identity, render_face

    for size in ((64, 64), (112, 80), (112, 112)):
        image = render_face(random_identity(np.random.default_rng(0)), np.random.default_rng(1), size)
        assert image.shape == (*size, 3) and image.dtype == np.uint8
