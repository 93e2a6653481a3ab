"""``amlit embed`` on a small checkpoint: aligned crops, raw faces with landmarks, bad images, resuming, safety."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from inference_helpers import write_checkpoint

from amlit.checkpoint_io import SafeCheckpointIO
from amlit.cli import main, run_tool
from amlit.data.align import TEMPLATES
from amlit.data.synthetic import random_identity, render_face
from amlit.errors import BadDataError, ConfigError
from amlit.inference import embed as embed_module
from amlit.inference.models import load_model

SPHEREFACE = TEMPLATES["sphereface_112x96"]


def aligned_faces(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` generated 112x96 faces (on SphereFace's template) as lossless PNGs ``<k>/face.png``."""
    rng = np.random.default_rng(seed)
    names = []
    for k in range(count):
        face = render_face(random_identity(rng), rng)  # RGB
        name = f"person{k}/face.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        names.append(name)
    return names


def raw_photos(tmp_path: Path, count: int, seed: int, offset, size=(250, 250)) -> list[np.ndarray]:
    """``count`` generated faces pasted into black photos of ``size`` (H, W) ``tmp_path/raw/raw<k>.png`` at
    ``offset(k)`` = (dx, dy); returns each photo's true five points (5, 2)."""
    names = aligned_faces(tmp_path / "aligned", count, seed=seed)
    (tmp_path / "raw").mkdir()
    points = []
    for k, name in enumerate(names):
        canvas = np.zeros((*size, 3), np.uint8)
        dx, dy = offset(k)
        canvas[dy : dy + 112, dx : dx + 96] = cv2.imread(str(tmp_path / "aligned" / name))
        cv2.imwrite(str(tmp_path / "raw" / f"raw{k}.png"), canvas)
        points.append(SPHEREFACE.array() + [dx, dy])
    return points


def torch_features(backbone, folder: Path, names: list[str]) -> np.ndarray:
    """The test feature computed here from the decoded files: L2-normalize(f(x) + f(mirror(x))), float64."""
    images = np.stack([cv2.cvtColor(cv2.imread(str(folder / n)), cv2.COLOR_BGR2RGB) for n in names])
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).double() - 128) / 128
    with torch.no_grad():
        both = backbone.double()(x) + backbone.double()(x.flip(-1))
    backbone.float()
    return torch.nn.functional.normalize(both, dim=1).numpy()


def test_aligned_crops_embed_to_the_test_feature_and_bad_images_are_listed(tmp_path):
    backbone = write_checkpoint(tmp_path / "model.ckpt")
    names = aligned_faces(tmp_path / "faces", 5)
    (tmp_path / "faces" / "broken").mkdir()
    (tmp_path / "faces" / "broken" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 50)  # a cut-off JPEG
    cv2.imwrite(str(tmp_path / "faces" / "broken" / "big.png"), np.zeros((120, 100, 3), np.uint8))  # not aligned
    output = tmp_path / "out" / "features.npz"
    counts = run_tool(["embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'faces'}",
                       f"--output={output}", "--batch_size=2", "--workers=2"])  # fmt: skip
    assert counts == {"images": 7, "embedded": 5, "bad": 2}
    with np.load(output, allow_pickle=False) as saved:
        assert saved["names"].tolist() == names  # sorted, relative to the folder
        np.testing.assert_allclose(saved["features"], torch_features(backbone, tmp_path / "faces", names), atol=2e-6)
    bad = pd.read_csv(tmp_path / "out" / "features.bad.csv")
    assert bad["image"].tolist() == ["broken/big.png", "broken/cut.jpg"]
    assert "120x100 (HxW)" in bad["reason"][0] and "truncated JPEG" in bad["reason"][1]
    # what to do with embed (not a training setting: data.image_size is no option of amlit embed)
    assert "--landmarks" in bad["reason"][0] and "data.image_size" not in bad["reason"][0]
    assert not (tmp_path / "out" / "features.npz.partial").exists()
    with pytest.raises(ConfigError, match="exists: pass --overwrite=true"):
        run_tool(
            ["embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'faces'}", f"--output={output}"]
        )


def test_one_image_file_as_images_is_embedded_as_a_list_of_one(tmp_path):
    """--images=<a face image> was read as a text list of paths: 'not UTF-8 text ... iconv', for any image."""
    backbone = write_checkpoint(tmp_path / "model.ckpt")
    (name,) = aligned_faces(tmp_path / "faces", 1, seed=6)
    output = tmp_path / "one.npz"
    run_tool(["embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'faces' / name}",
              f"--output={output}", "--workers=0"])  # fmt: skip
    with np.load(output, allow_pickle=False) as saved:
        assert saved["names"].tolist() == [Path(name).name]  # relative to its folder
        np.testing.assert_allclose(saved["features"], torch_features(backbone, tmp_path / "faces", [name]), atol=2e-6)


def test_files_of_other_types_in_the_folder_are_named_as_left_out(tmp_path):
    """A phone's .heic photos beside its .jpg ones were left out of the embeddings without a word."""
    write_checkpoint(tmp_path / "model.ckpt")
    names = aligned_faces(tmp_path / "faces", 2, seed=8)
    (tmp_path / "faces" / names[0]).with_suffix(".heic").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.warns(UserWarning, match=r"1 files under .*faces are left out.*: person0/face.heic; convert"):
        counts = run_tool(["embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'faces'}",
                           f"--output={tmp_path / 'f.npz'}", "--workers=0"])  # fmt: skip
    assert counts == {"images": 2, "embedded": 2, "bad": 0}


def test_raw_faces_are_aligned_with_the_models_template_from_their_landmarks(tmp_path):
    write_checkpoint(tmp_path / "model.ckpt")
    names = aligned_faces(tmp_path / "aligned", 4, seed=1)
    # Raw images: each aligned face pasted into a larger canvas at a whole-pixel offset; its landmarks are the
    # template's points moved by that offset, so aligning must give back the crop exactly.
    lines = []
    (tmp_path / "raw").mkdir()
    for k, name in enumerate(names):
        face = cv2.imread(str(tmp_path / "aligned" / name))
        canvas = np.zeros((200, 180, 3), np.uint8)
        dx, dy = 20 + 7 * k, 30 + 5 * k
        canvas[dy : dy + 112, dx : dx + 96] = face
        raw = f"raw{k}.png"
        cv2.imwrite(str(tmp_path / "raw" / raw), canvas)
        points = SPHEREFACE.array() + [dx, dy]
        lines.append(raw + " " + " ".join(f"{v:.4f}" for v in points.ravel()))
    cv2.imwrite(str(tmp_path / "raw" / "nolandmarks.png"), canvas)
    points = SPHEREFACE.array()[[1, 0, 2, 4, 3]] + [20, 30]  # left and right swapped: not a face
    cv2.imwrite(str(tmp_path / "raw" / "mirrored.png"), canvas)
    lines.append("mirrored.png " + " ".join(f"{v:.4f}" for v in points.ravel()))
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")

    common = [f"--model={tmp_path / 'model.ckpt'}", "--workers=0"]
    run_tool(["embed", *common, f"--images={tmp_path / 'aligned'}", f"--output={tmp_path / 'aligned.npz'}"])
    counts = run_tool(["embed", *common, f"--images={tmp_path / 'raw'}", f"--landmarks={tmp_path / 'landmarks.txt'}",
                       f"--output={tmp_path / 'raw.npz'}"])  # fmt: skip
    assert counts == {"images": 6, "embedded": 4, "bad": 2}
    aligned, raw = np.load(tmp_path / "aligned.npz"), np.load(tmp_path / "raw.npz")
    assert raw["names"].tolist() == [f"raw{k}.png" for k in range(4)]
    np.testing.assert_allclose(raw["features"], aligned["features"], atol=1e-5)
    reasons = dict(pd.read_csv(tmp_path / "raw.bad.csv").itertuples(index=False))
    assert "no landmarks" in reasons["nolandmarks.png"] and "do not fit the face template" in reasons["mirrored.png"]


def test_a_landmark_file_with_absolute_paths_under_the_root_is_matched_as_data_align_matches_it(tmp_path):
    """insightface .lst files often list absolute paths; amlit data align takes those under its root, and embed and
    verify took none of them ("no landmarks for it in the landmark file", for every image)."""
    write_checkpoint(tmp_path / "model.ckpt")
    raw = tmp_path / "raw"
    lst = []
    photos = raw_photos(tmp_path, 3, seed=4, offset=lambda k: (20 + 7 * k, 30 + 5 * k), size=(200, 180))
    for k, points in enumerate(photos):
        fields = ["1", str(raw / f"raw{k}.png"), str(k), "0", "0", "180", "200"]  # aligned, path, label, bbox
        lst.append("\t".join(fields + [f"{v:.4f}" for v in points[:, 0]] + [f"{v:.4f}" for v in points[:, 1]]))
    (tmp_path / "faces.lst").write_text("\n".join(lst) + "\n")
    common = [f"--model={tmp_path / 'model.ckpt'}", "--workers=0"]
    run_tool(["embed", *common, f"--images={tmp_path / 'aligned'}", f"--output={tmp_path / 'aligned.npz'}"])
    counts = run_tool(["embed", *common, f"--images={raw}", f"--landmarks={tmp_path / 'faces.lst'}",
                       f"--output={tmp_path / 'raw.npz'}"])  # fmt: skip
    assert counts == {"images": 3, "embedded": 3, "bad": 0}
    np.testing.assert_allclose(
        np.load(tmp_path / "raw.npz")["features"], np.load(tmp_path / "aligned.npz")["features"], atol=1e-5
    )
    # and the other way round: a list of absolute image paths, landmarks relative to --root
    relative = "".join(  # lfw format: x1 y1 ... x5 y5
        f"raw{k}.png " + " ".join(f"{x} {y}" for x, y in zip(f[7:12], f[12:17], strict=True)) + "\n"
        for k, f in enumerate(line.split("\t") for line in lst)
    )
    (tmp_path / "faces.txt").write_text(relative)
    (tmp_path / "images.txt").write_text("".join(f"{raw / f'raw{k}.png'}\n" for k in range(3)))
    counts = run_tool(["embed", *common, f"--images={tmp_path / 'images.txt'}", f"--root={raw}",
                       f"--landmarks={tmp_path / 'faces.txt'}", f"--output={tmp_path / 'listed.npz'}"])  # fmt: skip
    assert counts == {"images": 3, "embedded": 3, "bad": 0}


def test_landmarks_for_smaller_copies_are_refused_and_a_mostly_black_crop_is_a_bad_image(tmp_path):
    """The checks of ``amlit data align`` apply on the fly too: a landmark file for half-size copies (every face in
    the top-left quarter of its image) is refused before any work; a face whose crop would be mostly off its image
    is listed as bad."""
    write_checkpoint(tmp_path / "model.ckpt")
    points = raw_photos(tmp_path, 10, seed=2, offset=lambda k: (60 + 5 * k, 50 + 4 * k))
    lines = [(f"raw{k}.png", face) for k, face in enumerate(points)]
    lines[-1] = (lines[-1][0], SPHEREFACE.array() - SPHEREFACE.array().min(axis=0))  # face in the top-left corner
    common = ["embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'raw'}", "--workers=0"]
    for scale, landmarks in ((0.5, tmp_path / "half.txt"), (1.0, tmp_path / "full.txt")):
        landmarks.write_text(
            "".join(f"{n} " + " ".join(f"{v * scale:.3f}" for v in p.ravel()) + "\n" for n, p in lines)
        )
    with pytest.raises(BadDataError, match=r"half.txt does not fit .* all 10 images lie in the top-left quarter"):
        run_tool([*common, f"--landmarks={tmp_path / 'half.txt'}", f"--output={tmp_path / 'half.npz'}"])
    assert not (tmp_path / "half.npz").exists() and not (tmp_path / "half.npz.partial").exists()
    counts = run_tool([*common, f"--landmarks={tmp_path / 'full.txt'}", f"--output={tmp_path / 'full.npz'}"])
    assert counts == {"images": 10, "embedded": 9, "bad": 1}
    reasons = dict(pd.read_csv(tmp_path / "full.bad.csv").itertuples(index=False))
    assert list(reasons) == ["raw9.png"]
    assert "of the crop would lie outside the 250x250 (HxW) image" in reasons["raw9.png"]


def test_landmarks_written_xs_then_ys_are_refused_before_any_work(tmp_path):
    """Points written x1..x5 y1..y5 (MTCNN's order) read as x, y pairs: several faces pass the per-face checks and
    would be embedded from crops of the wrong place; the set's fit refuses the file (embed and verify)."""
    write_checkpoint(tmp_path / "model.ckpt")
    points = raw_photos(tmp_path, 6, seed=3, offset=lambda k: (40 + 9 * k, 70 + 7 * k))
    lines = [f"raw{k}.png " + " ".join(f"{v:.3f}" for v in np.concatenate([face[:, 0], face[:, 1]]))
             for k, face in enumerate(points)]  # fmt: skip
    (tmp_path / "xs_then_ys.txt").write_text("\n".join(lines) + "\n")
    model, landmarks = f"--model={tmp_path / 'model.ckpt'}", f"--landmarks={tmp_path / 'xs_then_ys.txt'}"
    with pytest.raises(BadDataError, match=r"xs_then_ys.txt does not fit .* likely in another order"):
        run_tool(["embed", model, landmarks, f"--images={tmp_path / 'raw'}", f"--output={tmp_path / 'x.npz'}"])
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "x.npz.partial").exists()
    (tmp_path / "pairs.txt").write_text("raw0.png raw1.png\nraw2.png raw3.png\nraw4.png raw5.png\n")
    with pytest.raises(BadDataError, match=r"likely in another order"):
        run_tool(["verify", model, landmarks, f"--pairs={tmp_path / 'pairs.txt'}", f"--root={tmp_path / 'raw'}"])


def test_raw_photos_with_an_orientation_tag_are_warned_of(tmp_path):
    """Phone photos store pixels rotated plus an EXIF orientation; landmarks of a detector that applied it
    (cv2.imread does) lie inside a square photo and look like a face, so the crop of the wrong place was silent."""
    from PIL import Image

    write_checkpoint(tmp_path / "model.ckpt")
    (name,) = aligned_faces(tmp_path / "aligned", 1, seed=7)
    canvas = np.zeros((200, 200, 3), np.uint8)
    canvas[40:152, 50:146] = cv2.cvtColor(cv2.imread(str(tmp_path / "aligned" / name)), cv2.COLOR_BGR2RGB)
    (tmp_path / "raw").mkdir()
    tag = Image.Exif()
    tag[274] = 6  # displayed rotated 90 degrees
    Image.fromarray(canvas).save(tmp_path / "raw" / "phone.jpg", quality=95, exif=tag)
    Image.fromarray(canvas).save(tmp_path / "raw" / "plain.jpg", quality=95)
    points = SPHEREFACE.array() + [50, 40]
    for image in ("phone", "plain"):
        (tmp_path / f"{image}.txt").write_text(f"{image}.jpg " + " ".join(f"{v:.3f}" for v in points.ravel()) + "\n")
    common = ["embed", f"--model={tmp_path / 'model.ckpt'}", "--workers=0"]
    with pytest.warns(UserWarning, match=r"1 of the first 1 images carry an orientation tag .*phone.jpg \(6: rotated"):
        run_tool([*common, f"--images={tmp_path / 'raw' / 'phone.jpg'}", f"--landmarks={tmp_path / 'phone.txt'}",
                  f"--output={tmp_path / 'phone.npz'}"])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_tool([*common, f"--images={tmp_path / 'raw' / 'plain.jpg'}", f"--landmarks={tmp_path / 'plain.txt'}",
                  f"--output={tmp_path / 'plain.npz'}"])  # fmt: skip


def test_a_model_without_a_recorded_template_needs_the_option_that_supplies_it(tmp_path):
    write_checkpoint(tmp_path / "model.ckpt", template=None)
    aligned_faces(tmp_path / "raw", 1)
    (tmp_path / "lm.txt").write_text("person0/face.png " + " ".join(map(str, SPHEREFACE.array().ravel())) + "\n")
    args = ["embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'raw'}",
            f"--landmarks={tmp_path / 'lm.txt'}", f"--output={tmp_path / 'x.npz'}", "--workers=0"]  # fmt: skip
    with pytest.raises(ConfigError, match=r"does not record the alignment template .* pass --template="):
        run_tool(args)
    assert run_tool([*args, "--template=sphereface_112x96"])["embedded"] == 1
    write_checkpoint(tmp_path / "model.ckpt")  # records sphereface_112x96
    # insightface's 112x112 template cut to 112x96 puts the points exactly there: the same alignment, accepted
    assert run_tool([*args, "--template=insightface_112x112", "--overwrite=true"])["embedded"] == 1
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=True)
    template = checkpoint["amlit_inference"]["input"]["alignment_template"]
    template.update(name="my_own", points=[[x + 3, y] for x, y in template["points"]])
    SafeCheckpointIO().save_checkpoint(checkpoint, tmp_path / "model.ckpt")
    with pytest.raises(ConfigError, match="trained on faces aligned with my_own, not sphereface_112x96"):
        run_tool([*args, "--template=sphereface_112x96", "--overwrite=true"])
    assert run_tool([*args, "--overwrite=true"])["embedded"] == 1  # its own template, read from the checkpoint
    with pytest.raises(ConfigError, match="does not give 112x96 crops"):
        run_tool([*args, "--template=insightface_112x112_typo", "--overwrite=true"])


class Interrupted(Exception):
    """Stands for Ctrl-C or a killed job (pytest handles a real KeyboardInterrupt itself)."""


def test_an_interrupted_embedding_resumes_where_it_stopped(tmp_path, monkeypatch):
    write_checkpoint(tmp_path / "model.ckpt")
    aligned_faces(tmp_path / "faces", 10)
    args = ["embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'faces'}", "--chunk=3",
            "--batch_size=2", "--workers=0"]  # fmt: skip
    run_tool([*args, f"--output={tmp_path / 'straight.npz'}"])

    real = embed_module.embedded_batches
    calls: list[int] = []

    def counting(model, faces, indices, *rest):
        calls.append(indices[0])
        return real(model, faces, indices, *rest)

    def stop_at_third_chunk(model, faces, indices, *rest):
        if len(calls) == 2:
            raise Interrupted  # Ctrl-C, or a killed job
        return counting(model, faces, indices, *rest)

    monkeypatch.setattr(embed_module, "embedded_batches", stop_at_third_chunk)
    with pytest.raises(Interrupted):
        run_tool([*args, f"--output={tmp_path / 'resumed.npz'}"])
    assert calls == [0, 3]
    assert sorted(p.name for p in (tmp_path / "resumed.npz.partial").glob("chunk-*")) == [
        "chunk-000000.npz",
        "chunk-000001.npz",
    ]
    calls.clear()
    monkeypatch.setattr(embed_module, "embedded_batches", counting)
    run_tool([*args, f"--output={tmp_path / 'resumed.npz'}"])
    assert calls == [6, 9]  # only the chunks not done before
    straight, resumed = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert resumed["names"].tolist() == straight["names"].tolist()
    np.testing.assert_array_equal(resumed["features"], straight["features"])

    # The part-finished work of other inputs is never mixed in
    calls.clear()
    monkeypatch.setattr(embed_module, "embedded_batches", stop_at_third_chunk)
    with pytest.raises(Interrupted):
        run_tool([*args, f"--output={tmp_path / 'other.npz'}"])
    (tmp_path / "faces" / "person0" / "face.png").rename(tmp_path / "faces" / "person0" / "moved.png")
    with pytest.raises(ConfigError, match=r"part-finished embedding of other inputs \(images differ\)"):
        run_tool([*args, f"--output={tmp_path / 'other.npz'}"])
    monkeypatch.setattr(embed_module, "embedded_batches", real)
    assert run_tool([*args, f"--output={tmp_path / 'other.npz'}", "--overwrite=true"])["embedded"] == 10


def test_an_image_replaced_after_an_interruption_is_not_resumed_with_its_old_feature(tmp_path, monkeypatch):
    write_checkpoint(tmp_path / "model.ckpt")
    names = aligned_faces(tmp_path / "faces", 4)
    args = ["embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'faces'}", "--chunk=2",
            "--workers=0", f"--output={tmp_path / 'out.npz'}"]  # fmt: skip
    real = embed_module.embedded_batches

    def stop_in_second_chunk(model, faces, indices, *rest):
        if indices[0] == 2:
            raise Interrupted
        return real(model, faces, indices, *rest)

    monkeypatch.setattr(embed_module, "embedded_batches", stop_in_second_chunk)
    with pytest.raises(Interrupted):
        run_tool(args)
    assert (tmp_path / "out.npz.partial" / "chunk-000000.npz").is_file()  # holds the features of names[:2]
    replaced = tmp_path / "faces" / names[0]
    replaced.write_bytes((tmp_path / "faces" / names[3]).read_bytes())  # `cp` another face over an embedded one
    monkeypatch.setattr(embed_module, "embedded_batches", real)
    with pytest.raises(ConfigError, match=r"some image files changed since .* delete .*out\.npz\.partial or pass "
                       r"--overwrite=true"):  # fmt: skip
        run_tool(args)
    run_tool([*args, "--overwrite=true"])
    run_tool([*args[:-1], f"--output={tmp_path / 'fresh.npz'}"])
    resumed, fresh = np.load(tmp_path / "out.npz"), np.load(tmp_path / "fresh.npz")
    assert resumed["names"].tolist() == fresh["names"].tolist()
    np.testing.assert_array_equal(resumed["features"], fresh["features"])
    row = resumed["names"].tolist().index(names[0])
    np.testing.assert_allclose(resumed["features"][row], resumed["features"][3], atol=1e-6)  # now the same face


def test_ctrl_c_says_in_one_line_what_was_kept_and_how_to_resume(tmp_path, monkeypatch, capsys):
    write_checkpoint(tmp_path / "model.ckpt")
    aligned_faces(tmp_path / "faces", 5)
    output = tmp_path / "out.npz"
    command = ["amlit", "embed", f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'faces'}",
               f"--output={output}", "--chunk=2", "--workers=0"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", command)

    def ctrl_c(*args):
        raise KeyboardInterrupt

    def interrupted_message() -> str:
        with pytest.raises(SystemExit) as info:
            main()
        assert info.value.code == 130  # the shell's code for SIGINT
        return capsys.readouterr().err.splitlines()[-1]  # the progress bar may stand above it

    with monkeypatch.context() as early:
        early.setattr(embed_module, "list_faces", ctrl_c)
        assert interrupted_message() == (
            "amlit: interrupted: no chunk was finished, nothing to resume; run the command again to start over"
        )
    real = embed_module.embedded_batches
    chunks: list[int] = []

    def ctrl_c_in_second_chunk(model, faces, indices, *rest):
        chunks.append(indices[0])
        return ctrl_c() if len(chunks) == 2 else real(model, faces, indices, *rest)

    monkeypatch.setattr(embed_module, "embedded_batches", ctrl_c_in_second_chunk)
    assert interrupted_message() == (
        f"amlit: interrupted: kept 1 finished chunk (--chunk=2 images each) in {output}.partial: run the same "
        "command again to embed the rest"
    )
    chunks.clear()
    monkeypatch.setattr(embed_module, "embedded_batches", lambda *args: chunks.append(args[2][0]) or real(*args))
    main()  # the same command resumes: only the chunks not finished
    assert chunks == [2, 4] and len(np.load(output)["names"]) == 5
    with monkeypatch.context() as before_embed:  # e.g. while Python imports: nothing of the command ran
        before_embed.setattr("amlit.cli.run_tool", ctrl_c)
        assert interrupted_message() == "amlit: interrupted"


class Payload:
    """Pickles as a call of os.system: what a malicious checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_carrying_code_never_runs_it(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "payload-ran"
    write_checkpoint(tmp_path / "honest.ckpt")
    evil = tmp_path / "evil.ckpt"
    checkpoint = torch.load(tmp_path / "honest.ckpt", weights_only=True)
    torch.save({**checkpoint, "callbacks": {"x": Payload(marker)}}, evil)
    aligned_faces(tmp_path / "faces", 1)
    for command in (
        ["embed", f"--model={evil}", f"--images={tmp_path / 'faces'}", f"--output={tmp_path / 'x.npz'}"],
        [
            "verify",
            f"--model={evil}",
            f"--image1={tmp_path / 'faces/person0/face.png'}",
            f"--image2={tmp_path / 'faces/person0/face.png'}",
        ],
        ["export", "onnx", f"--checkpoint={evil}", f"--output={tmp_path / 'x.onnx'}"],
    ):
        monkeypatch.setattr(sys, "argv", ["amlit", *command])
        with pytest.raises(SystemExit) as info:
            main()
        stderr = capsys.readouterr().err
        assert info.value.code == 2 and stderr.count("\n") == 1, stderr
        assert "holds pickled Python objects (posix.system)" in stderr and "not loaded" in stderr
    assert not marker.exists()
    # A record may only name amlit's own networks: a class path is never imported from a file
    record = checkpoint["amlit_inference"]
    record["backbone"]["class_path"] = "subprocess.Popen"
    record["backbone"]["init_args"] = {"args": f"touch {marker}", "shell": True}
    SafeCheckpointIO().save_checkpoint(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(BadDataError, match=r"names the backbone 'subprocess\.Popen', which is not one of amlit's"):
        load_model(tmp_path / "other.ckpt")
    assert not marker.exists()


def test_a_config_passed_as_the_model_is_named_as_not_a_checkpoint(tmp_path, monkeypatch, capsys):
    config = tmp_path / "demo.yaml"
    config.write_text("# a training config\nmodel:\n  embedding_dim: 16\n")
    aligned_faces(tmp_path / "faces", 1)
    command = ["embed", f"--model={config}", f"--images={tmp_path / 'faces'}", f"--output={tmp_path / 'x.npz'}"]
    monkeypatch.setattr(sys, "argv", ["amlit", *command])
    with pytest.raises(SystemExit) as info:
        main()
    stderr = capsys.readouterr().err
    assert info.value.code == 2 and stderr.count("\n") == 1, stderr
    assert f"{config} is not a checkpoint amlit can read: it is a text file (first line '# a training" in stderr
    assert "--model takes an amlit checkpoint" in stderr and ".onnx" in stderr
    assert "weights_only" not in stderr and "--ckpt_path" not in stderr  # torch's advice; an option of fit
    assert not (tmp_path / "x.npz").exists()


def test_checkpoints_without_a_record_or_with_wrong_weights_are_refused(tmp_path):
    write_checkpoint(tmp_path / "model.ckpt")
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=True)
    old = {k: v for k, v in checkpoint.items() if k != "amlit_inference"}
    SafeCheckpointIO().save_checkpoint(old, tmp_path / "old.ckpt")
    with pytest.raises(BadDataError, match="does not record how to use it for inference"):
        load_model(tmp_path / "old.ckpt")
    checkpoint["state_dict"]["backbone.fc5.weight"] = torch.zeros(3, 3)
    SafeCheckpointIO().save_checkpoint(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(BadDataError, match="its weights do not fit its recorded backbone"):
        load_model(tmp_path / "bad.ckpt")


def test_an_onnx_export_with_another_record_format_is_refused(tmp_path):
    """An export's metadata says how to feed it as a checkpoint's record does; one of another format (another amlit
    version, whose fields may mean other things) is refused like such a checkpoint, not run as if it were ours."""
    import json

    import onnx

    from amlit.inference.models import META_RECORD

    write_checkpoint(tmp_path / "model.ckpt")
    export = tmp_path / "export" / "model.onnx"
    run_tool(["export", "onnx", f"--checkpoint={tmp_path / 'model.ckpt'}", f"--output={export}"])
    assert load_model(export, "cpu").record["format"] == 1
    graph = onnx.load(export)
    (entry,) = [entry for entry in graph.metadata_props if entry.key == META_RECORD]
    entry.value = json.dumps({**json.loads(entry.value), "format": 2})
    onnx.save(graph, tmp_path / "future.onnx")
    with pytest.raises(BadDataError, match=r"future.onnx: inference record format 2, this amlit reads 1"):
        load_model(tmp_path / "future.onnx", "cpu")


def test_a_device_this_machine_does_not_have_is_refused_in_one_line(tmp_path):
    """--device=cuda without a GPU (or an index past the last GPU, or a typo) stopped with torch's traceback."""
    write_checkpoint(tmp_path / "model.ckpt")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: missing on every machine
    for device, message in ((missing, "no such CUDA device here"), ("gpu", "is not a torch device")):
        with pytest.raises(ConfigError, match=rf"--device={device}:? {message}"):
            load_model(tmp_path / "model.ckpt", device)
    assert load_model(tmp_path / "model.ckpt", "cpu").device == torch.device("cpu")


def test_bf16_embedding_runs_the_network_in_bfloat16_and_stays_close(tmp_path):
    backbone = write_checkpoint(tmp_path / "model.ckpt")
    names = aligned_faces(tmp_path / "faces", 6, seed=3)
    common = [f"--model={tmp_path / 'model.ckpt'}", f"--images={tmp_path / 'faces'}", "--workers=0"]
    run_tool(["embed", *common, f"--output={tmp_path / 'fp32.npz'}"])
    with pytest.warns(UserWarning, match="bf16 embedding on the CPU"):
        run_tool(["embed", *common, f"--output={tmp_path / 'bf16.npz'}", "--precision=bf16"])
    fp32, bf16 = np.load(tmp_path / "fp32.npz")["features"], np.load(tmp_path / "bf16.npz")["features"]
    assert bf16.dtype == np.float32 and np.allclose(np.linalg.norm(bf16, axis=1), 1, atol=1e-6)
    cosine = (fp32 * bf16).sum(axis=1)
    assert not np.array_equal(fp32, bf16)  # bfloat16 arithmetic did run...
    assert cosine.min() > 0.99, cosine  # ...and moved the features only a little
    # the same as the network run under autocast here
    images = np.stack([cv2.cvtColor(cv2.imread(str(tmp_path / "faces" / n)), cv2.COLOR_BGR2RGB) for n in names])
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 128) / 128
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        both = backbone(torch.cat([x, x.flip(-1)])).float()
    expected = torch.nn.functional.normalize(both[:6] + both[6:], dim=1).numpy()
    np.testing.assert_allclose(bf16, expected, atol=1e-6)
    with pytest.raises(ConfigError, match="32 or bf16"):
        load_model(tmp_path / "model.ckpt", "cpu", precision="fp16")
    (tmp_path / "model.onnx").write_bytes(b"not read")
    with pytest.raises(ConfigError, match="ONNX export runs in float32"):
        load_model(tmp_path / "model.onnx", "cpu", precision="bf16")
