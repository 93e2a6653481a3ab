"""`amlit figure psi|gradient|toy`: the paper's Figures 2, 5 and 4 on small settings, their numbers checked."""

from __future__ import annotations

import gzip
import math
import re
import struct

import numpy as np
import pytest
import torch

from amlit.cli import run_tool
from amlit.errors import BadDataError, MissingDataError, UserInputError
from amlit.figures.gradient import figure_gradient
from amlit.figures.toy import angles, figure_toy
from amlit.figures.toy_data import generated_shapes, read_fashion_mnist, read_idx

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def draw_psi_curve_m(theta_degrees: np.ndarray) -> dict[str, np.ndarray]:
    """happynear/AMSoftmax draw/draw_psi_curve.m, transcribed (its Fai(m, :) loop over k, then the lambda blend)."""
    fai = {}
    for m in (2, 4):
        values = np.zeros_like(theta_degrees)
        for k in range(m):
            inside = (theta_degrees >= k * 180 / m) & (theta_degrees <= (k + 1) * 180 / m)
            values[inside] = (-1) ** k * np.cos(np.radians(m * theta_degrees[inside])) - 2 * k
        fai[m] = values
    cos = np.cos(np.radians(theta_degrees))
    return {
        "Softmax": cos,
        "A-Softmax (m=2, lambda=0)": fai[2],
        "A-Softmax (m=4, lambda=0)": fai[4],
        "A-Softmax (m=4, lambda=5)": (cos * 5 + fai[4]) / 6,
        "AM-Softmax (m=0.35)": cos - 0.35,
    }


def test_figure2_psi_is_draw_psi_curve_m(tmp_path, capsys):
    printed = run_tool(["figure", "psi", f"--output={tmp_path / 'psi.png'}"])
    assert (tmp_path / "psi.png").read_bytes().startswith(PNG_MAGIC)
    expected = draw_psi_curve_m(np.array([0, 30, 45, 60, 90, 120, 150, 180], dtype=np.float64))
    assert set(printed) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(printed[name], values, atol=1e-6, err_msg=name)  # the heads compute in float32
    out = capsys.readouterr().out
    assert "A-Softmax (m=4, lambda=5)" in out and f"{1 / 6:.4f}" in out  # psi(60 deg) = (5 * 0.5 - 1.5) / 6


def softmax_gradient_norm(weight: np.ndarray, feature: np.ndarray, target: int, scale: float | None) -> float:
    """|dL/df| of cross-entropy over logits W_hat f (scale None) or s W_hat f / |f|, written out in float64:
    g = sum_j (p_j - y_j) W_hat_j, and with normalization (s / |f|) (I - f_hat f_hat^T) g."""
    unit = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    norm = np.linalg.norm(feature)
    inputs = feature if scale is None else scale * feature / norm
    logits = unit @ inputs
    p = np.exp(logits - logits.max())
    p /= p.sum()
    p[target] -= 1
    g = unit.T @ p
    if scale is None:
        return float(np.linalg.norm(g))
    f_hat = feature / norm
    return float(np.linalg.norm(scale / norm * (g - f_hat * (f_hat @ g))))


@pytest.mark.parametrize("scale", [30.0, 10.0])
def test_figure5_gradient_norms_and_where_the_curves_cross(tmp_path, scale, capsys):
    result = figure_gradient(tmp_path / "gradient.png", scale=scale, num_classes=20, embedding_dim=64, seed=1)
    assert (tmp_path / "gradient.png").read_bytes().startswith(PNG_MAGIC)
    assert result["crossing"] == pytest.approx(scale, rel=0.02)  # the paper: "the intersection ... is at 30"
    weight = torch.randn(20, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    unit = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    nearest = int(np.argmax(np.where(np.arange(20) == 0, -2, unit @ unit[0])))
    direction = (unit[0] + unit[nearest]) / np.linalg.norm(unit[0] + unit[nearest])
    for norm in (0.1, 3.0, 100.0):
        raw = softmax_gradient_norm(weight, norm * direction, 0, None)
        normalized = softmax_gradient_norm(weight, norm * direction, 0, scale)
        assert result[f"without feature normalization@{norm:g}"] == pytest.approx(raw, rel=1e-4)
        assert result[f"with feature normalization (s={scale:g})@{norm:g}"] == pytest.approx(normalized, rel=1e-4)
    assert f"cross at |f| = {result['crossing']:.2f}" in capsys.readouterr().out


def test_figure5_reads_the_class_weights_of_a_checkpoint(tmp_path):
    weight = torch.randn(6, 16, generator=torch.Generator().manual_seed(3))
    torch.save({"state_dict": {"head.weight": weight}, "pytorch-lightning_version": "2.5"}, tmp_path / "trained.ckpt")
    result = figure_gradient(tmp_path / "g.png", checkpoint=tmp_path / "trained.ckpt")
    unit = (weight / weight.norm(dim=1, keepdim=True)).double().numpy()
    nearest = int(np.argmax(np.where(np.arange(6) == 0, -2, unit @ unit[0])))
    direction = (unit[0] + unit[nearest]) / np.linalg.norm(unit[0] + unit[nearest])
    expected = softmax_gradient_norm(weight.double().numpy(), 3.0 * direction, 0, None)
    assert result["without feature normalization@3"] == pytest.approx(expected, rel=1e-4)
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.5"}, tmp_path / "other.ckpt")
    with pytest.raises(BadDataError, match=r"head\.weight"):
        figure_gradient(tmp_path / "g.png", checkpoint=tmp_path / "other.ckpt")


def test_angles_are_the_intra_class_and_centre_angles():
    """Two classes on the equator, 3 features each at +-10 degrees around centres 90 degrees apart (+8 more classes)."""
    rows, labels = [], []
    for c in range(10):
        centre = math.radians(36 * c)
        for offset in (-10, 0, 10):
            a = centre + math.radians(offset)
            rows.append([math.cos(a), math.sin(a), 0.0])
            labels.append(c)
    intra, between = angles(torch.tensor(rows) * 5.0, torch.tensor(labels))
    assert intra == pytest.approx(20 / 3, abs=1e-6)  # mean of 10, 0, 10 degrees
    assert between == pytest.approx(36.0, abs=1e-6)


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(data)


def fashion_mnist_folder(folder, gz: bool):
    folder.mkdir()
    suffix = ".gz" if gz else ""
    for split, (count, seed) in {"train": (300, 0), "t10k": (100, 1)}.items():
        images, labels = generated_shapes(count, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_idx_files_are_read_as_written(tmp_path, gz):
    splits = read_fashion_mnist(fashion_mnist_folder(tmp_path / "fmnist", gz))
    images, labels = generated_shapes(100, 1)
    np.testing.assert_array_equal(splits["test"][0], images)
    np.testing.assert_array_equal(splits["test"][1], labels)
    assert splits["train"][0].shape == (300, 28, 28)


def test_damaged_idx_files_are_refused(tmp_path):
    folder = fashion_mnist_folder(tmp_path / "fmnist", gz=False)
    labels = folder / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-5])
    with pytest.raises(BadDataError, match="truncated or padded"):
        read_fashion_mnist(folder)
    labels.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">i", 1) + b"\x00\x00\x00\x00")  # float32 IDX
    with pytest.raises(BadDataError, match="0x0d"):
        read_idx(labels)
    labels.write_text("not an idx file")
    with pytest.raises(BadDataError, match="not an IDX file"):
        read_idx(labels)
    labels.unlink()
    with pytest.raises(MissingDataError, match="train-labels-idx1-ubyte"):
        read_fashion_mnist(folder)


def test_toy_runs_on_fashion_mnist_files(tmp_path, capsys):
    folder = fashion_mnist_folder(tmp_path / "fmnist", gz=True)
    result = run_tool(
        ["figure", "toy", f"--output={tmp_path / 'toy.png'}", f"--fashion_mnist={folder}", "--steps=3"]
        + ["--train_images=200", "--test_images=100", "--width=2", "--threads=1"]
    )
    assert set(result) == {"softmax", "normface", "a_softmax", "am_0.2", "am_0.5"}
    assert (tmp_path / "toy.png").read_bytes().startswith(PNG_MAGIC)
    assert f"Fashion-MNIST from {folder}" in capsys.readouterr().out
    one = run_tool(
        ["figure", "toy", f"--output={tmp_path / 'one.png'}", f"--fashion_mnist={folder}", "--steps=3"]
        + ["--train_images=200", "--test_images=100", "--width=2", "--threads=1", "--losses=am_0.5"]
    )
    assert set(one) == {"am_0.5"}  # one loss alone, not a list refused


@pytest.mark.slow
def test_toy_larger_margin_gives_tighter_classes(tmp_path, capsys):
    """Figure 4's claim on small settings: AM-Softmax with m=0.5 is tighter than with m=0.2 and than Softmax."""
    result = figure_toy(
        tmp_path / "toy.png", losses=["softmax", "am_0.2", "am_0.5"], steps=300, train_images=3000,
        test_images=500, threads=1,
    )  # fmt: skip
    intra = {key: values["intra_class_angle"] for key, values in result.items()}
    assert intra["am_0.5"] < intra["am_0.2"] and intra["am_0.5"] < intra["softmax"], intra
    assert all(values["accuracy"] > 0.5 for values in result.values()), result  # trained, not collapsed
    printed = capsys.readouterr().out
    for key, name in (("softmax", "Softmax"), ("am_0.5", "AM-Softmax (s=10, m=0.5)")):
        line = next(line for line in printed.splitlines() if line.startswith(name))
        assert f"{result[key]['intra_class_angle']:.3f}" in line and f"{result[key]['min_centre_angle']:.3f}" in line


def test_toy_results_do_not_depend_on_what_ran_before(tmp_path):
    settings = {"losses": ["am_0.2"], "steps": 3, "train_images": 100, "test_images": 50, "width": 2, "threads": 1}
    torch.manual_seed(1)
    first = figure_toy(tmp_path / "a.png", **settings)
    torch.rand(1000)  # another state of the global generator
    assert figure_toy(tmp_path / "b.png", **settings) == first


@pytest.mark.parametrize("figure", ["psi", "gradient", "toy"])
@pytest.mark.parametrize("name", ["figure.txt", "figure", "."])
def test_an_output_that_is_no_image_file_name_is_refused_before_the_work(tmp_path, monkeypatch, figure, name):
    # matplotlib refused .txt after the work (a traceback after minutes of toy training) and wrote "figure.png"
    # for "figure" (and a hidden ".png" for ".") while printing that it wrote the name given
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=rf"--output={re.escape(name)}: "):
        run_tool(["figure", figure, f"--output={name}"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "option",
    ["--checkpoint=missing.ckpt", "--checkpoint=.", "--checkpoint=empty.ckpt", "--checkpoint=cut.ckpt"]
    + ["--embedding_dim=0", "--embedding_dim=-3", "--num_classes=1"],
)
def test_figure5_bad_checkpoint_or_sizes_are_one_line_errors(tmp_path, monkeypatch, capsys, option):
    from test_faults import amlit_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    torch.save({"state_dict": {"head.weight": torch.ones(3, 4)}}, tmp_path / "whole.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "whole.ckpt").read_bytes()[:300])
    code, err = amlit_main(["figure", "gradient", "--output=g.png", option], monkeypatch, capsys)
    assert code == 2 and err.startswith("amlit: error: ") and len(err.strip().splitlines()) == 1, err
    assert option.split("=")[1] in err


@pytest.mark.parametrize("option", ["--test_images=5", "--train_images=9"])
def test_toy_refuses_too_few_images_for_every_class(tmp_path, option):
    # 5 test images of 10 classes: classes without a centre gave a NaN min centre angle, printed as a result
    with pytest.raises(UserInputError, match=rf"{option}: no image of class\(es\) \["):
        run_tool(["figure", "toy", f"--output={tmp_path / 'toy.png'}", "--steps=1", "--width=2", "--threads=1", option])


def test_toy_refuses_zero_threads(tmp_path):
    # --threads=0 passed the "> 0" check as falsy and ran on torch's default threads
    with pytest.raises(UserInputError, match="threads"):
        run_tool(["figure", "toy", f"--output={tmp_path / 'toy.png'}", "--steps=1", "--threads=0"])


def test_toy_refuses_a_loss_listed_twice(tmp_path):
    # --losses=[am_0.2,am_0.2] trained that loss twice and drew the same panel twice
    with pytest.raises(UserInputError, match=r"--losses names \['am_0.2'\] more than once"):
        run_tool(["figure", "toy", f"--output={tmp_path / 'toy.png'}", "--steps=1", "--losses=[am_0.2,am_0.2]"])
    assert not (tmp_path / "toy.png").exists()
