"""``RecordIO`` training source end to end: insightface-layout files built here, read through ``CasiaDataModule``;
identity mapping, the 112x112 -> 112x96 crop, bad-data policy, and the rec-info / rec-export tools."""

import re
import shutil
import struct

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from amlit.cli import run_tool
from amlit.data import CasiaDataModule, ImageFolder, RecordIO
from amlit.data.recordio import read_idx, write_insightface_rec, write_record
from amlit.data.synthetic import random_identity, render_face
from amlit.errors import BadDataError, ConfigError

CASIA_IDS = ["0000045", "0000099", "0000100", "0000513", "0004539", "0166921", "1056413", "3478560"]
PER_CLASS = 3


@pytest.fixture(scope="module")
def samples() -> list[tuple[int, bytes]]:
    """(class, 112x112 JPEG) sorted by class; one image is gray (1 channel) to check it becomes 3 channels."""
    out = []
    for cls in range(len(CASIA_IDS)):
        rng = np.random.default_rng([3, cls])
        identity = random_identity(rng)
        for n in range(PER_CLASS):
            image = cv2.cvtColor(render_face(identity, rng, (112, 112)), cv2.COLOR_RGB2BGR)
            if cls == 1 and n == 0:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            out.append((cls, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()))
    return out


@pytest.fixture
def rec(samples, tmp_path):
    """A faces_webface_112x112-like folder plus an identity list (one CASIA id per class line)."""
    folder = write_insightface_rec(tmp_path / "faces_webface_112x112", samples)
    (tmp_path / "ids.txt").write_text("# class -> CASIA id\n" + "\n".join(CASIA_IDS) + "\n")
    return folder


def expected_rgb(encoded: bytes, crop: bool = True) -> np.ndarray:
    """Independent decode: cv2 on the same bytes, BGR -> RGB, 8 px off each side for 112x96."""
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return image[:, 8:104] if crop else image


def test_datamodule_from_rec_removes_listed_casia_ids_and_serves_center_crops(rec, samples, tmp_path):
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("0000513\n0166921\n9999999\n")
    dm = CasiaDataModule(
        RecordIO(rec, identity_list=tmp_path / "ids.txt"), exclude_id_lists=[exclude], batch_size=4, num_workers=0
    )
    assert dm.num_classes == len(CASIA_IDS) - 2
    assert dm.removed_identities == ["0000513", "0166921"]
    assert len(dm.train_table) == (len(CASIA_IDS) - 2) * PER_CLASS
    dataset = dm.train_dataloader().dataset
    for i, row in enumerate(dm.train_table.itertuples()):
        key = int(row.name)  # keys 1..N in sample order
        assert row.identity == CASIA_IDS[samples[key - 1][0]]
        image, target = dataset[i]
        assert image.dtype == torch.uint8 and image.shape == (112, 96, 3)
        np.testing.assert_array_equal(image.numpy(), expected_rgb(samples[key - 1][1]))
        assert target == row.label
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 112, 96, 3) and images.dtype == torch.uint8 and labels.dtype == torch.int64


def test_array_labels_train_lst_and_112x112(samples, tmp_path):
    folder = write_insightface_rec(tmp_path / "rec", samples, array_labels=True, with_count=False)
    # insightface's train.lst: "<aligned>\t<path>\t<class>" per image; the folder names the identity.
    lines = [f"1\t/data/CASIA/{CASIA_IDS[cls]}/{n:03d}.jpg\t{cls}" for n, (cls, _) in enumerate(samples)]
    (tmp_path / "train.lst").write_text("\n".join(lines) + "\n")
    source = RecordIO(folder / "train.rec", identity_list=tmp_path / "train.lst")
    table = source.image_table((112, 96))
    assert table["identity"].tolist() == [CASIA_IDS[cls] for cls, _ in samples]
    dataset = source.dataset(table["name"], range(len(table)), (112, 112))
    np.testing.assert_array_equal(dataset[5][0].numpy(), expected_rgb(samples[5][1], crop=False))
    with pytest.raises(BadDataError, match=r"holds 112x112 \(HxW\) faces but data.image_size is 100x100: .*112,112"):
        source.image_table((100, 100))
    (tmp_path / "train.lst").write_text(lines[0] + "\n" + lines[0].replace("\t0", "\t1") + "\n")
    with pytest.raises(BadDataError, match="classes and image folders do not match one to one"):
        RecordIO(folder, identity_list=tmp_path / "train.lst").image_table((112, 96))


def test_an_mxnet_im2rec_lst_names_the_classes_too_and_another_layout_is_one_error(samples, tmp_path):
    """im2rec writes '<index>\\t<label as float>\\t<path>' (path last): it was read as insightface's column order,
    a ValueError traceback."""
    folder = write_insightface_rec(tmp_path / "rec", samples)
    lines = [f"{n}\t{float(cls):f}\tCASIA/{CASIA_IDS[cls]}/{n:03d}.jpg" for n, (cls, _) in enumerate(samples)]
    (tmp_path / "im2rec.lst").write_text("\n".join(lines) + "\n")
    table = RecordIO(folder, identity_list=tmp_path / "im2rec.lst").image_table((112, 96))
    assert table["identity"].tolist() == [CASIA_IDS[cls] for cls, _ in samples]
    (tmp_path / "names.lst").write_text("\n".join(f"{n}\tx\tCASIA/{n:03d}.jpg" for n in range(len(samples))) + "\n")
    with pytest.raises(
        BadDataError, match=r"names.lst: expected insightface's .* or mxnet im2rec's .*; got \['0', 'x'"
    ):
        RecordIO(folder, identity_list=tmp_path / "names.lst").image_table((112, 96))


def test_without_identity_list_identities_are_class_numbers_and_say_so(rec):
    with pytest.warns(UserWarning, match="identities are class numbers .* NOT CASIA ids"):
        table = RecordIO(rec).image_table((112, 96))
    assert sorted(table["identity"].unique()) == [f"{c:07d}" for c in range(len(CASIA_IDS))]
    # CASIA-id exclusion lists would hit the wrong classes: refused before anything is read.
    exclude = rec / "exclude.txt"
    exclude.write_text(f"{CASIA_IDS[0]}\n")
    with pytest.raises(ConfigError, match=r"only knows class numbers: set data\.train\.identity_list"):
        CasiaDataModule(RecordIO(rec), exclude_id_lists=[exclude])


def test_identity_list_of_the_wrong_length_and_property_mismatch_are_errors(rec, tmp_path):
    (tmp_path / "short.txt").write_text("\n".join(CASIA_IDS[:-1]) + "\n")
    with pytest.raises(BadDataError, match=r"short.txt lists 7 identities but the .rec has 8 classes"):
        RecordIO(rec, identity_list=tmp_path / "short.txt").image_table((112, 96))
    # 8 lines, one id twice: counted as the lines and the distinct ids, naming the repeated one.
    (tmp_path / "dup.txt").write_text("\n".join([*CASIA_IDS[:4], CASIA_IDS[3], *CASIA_IDS[5:]]) + "\n")
    repeated = rf"dup.txt lists 7 distinct identities \(8 lines, 1 repeated: {CASIA_IDS[3]}\) but the .rec has 8"
    with pytest.warns(UserWarning, match="listed again"), pytest.raises(BadDataError, match=repeated):
        RecordIO(rec, identity_list=tmp_path / "dup.txt").image_table((112, 96))
    (rec / "property").write_text("10572,112,112\n")
    with pytest.raises(BadDataError, match=r"property says 10572 classes but the image records .* have 8"):
        RecordIO(rec).image_table((112, 96))
    (rec / "property").write_text(f"8,112,112\n{len(CASIA_IDS) * PER_CLASS + 1}\n")
    with pytest.raises(BadDataError, match=r"property says 25 images but .* has 24 image records"):
        RecordIO(rec).image_table((112, 96))


def test_no_record_zero_header_means_every_key_is_an_image(samples, tmp_path):
    """mxnet im2rec files: keys 0..N-1, scalar labels, no ranges."""
    folder = tmp_path / "plain"
    folder.mkdir()
    with open(folder / "data.rec", "wb") as file:
        offsets = [
            write_record(file, struct.pack("<IfQQ", 0, cls, k, 0) + jpeg) for k, (cls, jpeg) in enumerate(samples)
        ]
    (folder / "data.idx").write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets)))
    with pytest.warns(UserWarning, match="class numbers"):
        table = RecordIO(folder / "data.rec").image_table((112, 96))
    assert table["name"].tolist() == [str(k) for k in range(len(samples))]
    assert table["identity"].tolist() == [f"{cls:07d}" for cls, _ in samples]


def test_damaged_records_follow_the_bad_data_policy(rec, samples):
    idx = read_idx(rec / "train.idx")
    lines = (rec / "train.idx").read_text().splitlines()
    lines[2] = f"2\t{idx[2] + 4}"  # key 2 now points inside its record
    (rec / "train.idx").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadDataError, match=r"1 damaged record\(s\): .*train.rec key 2 \(byte \d+\): no RecordIO magic"):
        RecordIO(rec, on_bad="fail").image_table((112, 96))
    with pytest.warns(UserWarning, match=r"(?s)skipping 1 record\(s\):.*key 2"):
        table = RecordIO(rec, identity_list=rec.parent / "ids.txt").image_table((112, 96))
    assert "2" not in set(table["name"]) and len(table) == len(samples) - 1


def test_undecodable_and_wrongly_sized_images_are_skipped_or_raise(samples, tmp_path):
    broken = list(samples)
    broken[0] = (0, b"\xff\xd8 not a jpeg \xff\xd9")
    broken[1] = (0, cv2.imencode(".jpg", np.zeros((100, 100, 3), np.uint8))[1].tobytes())
    folder = write_insightface_rec(tmp_path / "rec", broken)
    source = RecordIO(folder, on_bad="skip")
    dataset = source.dataset(["1", "2", "3"], [10, 11, 12], (112, 96))
    with pytest.warns(UserWarning, match="skipping an unreadable training image") as caught:
        image, target = dataset[0]
    assert any("key 1: not an image" in str(w.message) for w in caught)
    assert any("key 2: image is 100x100 (HxW)" in str(w.message) for w in caught)
    assert target == 12
    np.testing.assert_array_equal(image.numpy(), expected_rgb(samples[2][1]))
    failing = RecordIO(folder, on_bad="fail").dataset(["1", "2"], [0, 0], (112, 96))
    with pytest.raises(BadDataError, match=r"train.rec key 1: not an image"):
        failing[0]
    with pytest.raises(BadDataError, match=r"train.rec key 2: image is 100x100 \(HxW\)"):
        failing[1]


def test_workers_open_the_file_themselves(rec, samples, tmp_path):
    """Two DataLoader worker processes read the same .rec; every batch equals the independent decode."""
    dm = CasiaDataModule(RecordIO(rec, identity_list=tmp_path / "ids.txt"), batch_size=6, num_workers=2)
    dataset = dm.train_dataloader().dataset
    dataset[0]  # the parent opens its handle first; workers must not inherit it
    loader = DataLoader(dataset, batch_size=5, num_workers=2, shuffle=False)
    seen = 0
    for images, targets in loader:
        for image, target in zip(images, targets, strict=True):
            key = int(dm.train_table["name"].iloc[seen])
            np.testing.assert_array_equal(image.numpy(), expected_rgb(samples[key - 1][1]))
            assert target == dm.train_table["label"].iloc[seen]
            seen += 1
    assert seen == len(samples)


def test_rec_info_reports_counts_and_problems(rec, tmp_path, capsys):
    summary = run_tool(["data", "rec-info", f"--path={rec}", f"--identity_list={tmp_path / 'ids.txt'}"])
    out = capsys.readouterr().out
    assert summary["classes"] == 8 and summary["usable_images"] == 24 and summary["identity_records"] == 8
    assert summary["images_per_class"]["min"] == PER_CLASS and summary["images_per_class"]["max"] == PER_CLASS
    assert summary["checked_images"] == 24 and summary["problems"] == []
    assert "record 0: images are keys 1..24, identity records 25..32" in out and "0 problem(s)" in out
    (rec / "property").write_text("10572,112,112\n")
    with pytest.raises(BadDataError, match=r"train.rec: 2 problem\(s\), listed above"):
        run_tool(["data", "rec-info", f"--path={rec / 'train.rec'}", "--check_images=0"])
    out = capsys.readouterr().out
    assert "says 10572 classes" in out and "10564 class numbers have no images" in out


def test_rec_export_writes_a_tree_image_folder_can_train_from(rec, samples, tmp_path):
    out = tmp_path / "tree"
    written = run_tool(
        [
            "data",
            "rec-export",
            f"--path={rec}",
            f"--output={out}",
            "--crop=true",
            f"--identity_list={tmp_path / 'ids.txt'}",
        ]
    )
    assert written == len(samples)
    png = cv2.cvtColor(cv2.imread(str(out / CASIA_IDS[2] / "7.png")), cv2.COLOR_BGR2RGB)  # key 7 = class 2
    np.testing.assert_array_equal(png, expected_rgb(samples[6][1]))
    table = ImageFolder(out).image_table((112, 96))
    assert sorted(table["identity"].unique()) == CASIA_IDS and len(table) == len(samples)
    shutil.rmtree(out)
    with pytest.warns(UserWarning, match="identities are class numbers"):
        run_tool(["data", "rec-export", f"--path={rec}", f"--output={out}"])
    assert (out / "0000003" / "10.jpg").read_bytes() == samples[9][1]  # stored bytes copied unchanged


def test_rec_export_refuses_an_output_that_is_not_empty(rec, samples, tmp_path):
    """A second export into the same folder (here with --identity_list after one without) added the CASIA-id folders
    beside the class-number ones: every person twice, as two classes of the tree."""
    out = tmp_path / "tree"
    with pytest.warns(UserWarning, match="identities are class numbers"):
        run_tool(["data", "rec-export", f"--path={rec}", f"--output={out}"])
    before = sorted(out.rglob("*"))
    with pytest.raises(ConfigError, match=rf"--output={out} is not empty \(it holds 0000000, 0000001, "):
        run_tool(["data", "rec-export", f"--path={rec}", f"--output={out}", f"--identity_list={tmp_path / 'ids.txt'}"])
    assert sorted(out.rglob("*")) == before
    (tmp_path / "empty").mkdir()
    assert run_tool(["data", "rec-export", f"--path={rec}", f"--output={tmp_path / 'empty'}"]) == len(samples)


def test_rec_export_refuses_identity_folders_that_leave_the_output(samples, tmp_path):
    """A train.lst names each class by its image's folder: '..' (or no folder) must not become an output path."""
    folder = write_insightface_rec(tmp_path / "rec", samples)
    folders = ["..", *CASIA_IDS[1:]]
    lines = [f"1\t/data/{folders[cls]}/{n:03d}.jpg\t{cls}" for n, (cls, _) in enumerate(samples)]
    (tmp_path / "train.lst").write_text("\n".join(lines) + "\n")
    out, ids = tmp_path / "a" / "tree", f"--identity_list={tmp_path / 'train.lst'}"
    with pytest.raises(BadDataError, match=r"train.lst: 1 identity folder\(s\) would be written outside .*: '..'"):
        run_tool(["data", "rec-export", f"--path={folder}", f"--output={out}", ids])
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_paper_config_fits_one_step_from_a_rec(rec, tmp_path, monkeypatch):
    from conftest import paper_fit_args

    from amlit.cli import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ex.txt").write_text("0000513\n")
    cli = run_cli(
        [
            *paper_fit_args(tmp_path),
            "--trainer.fast_dev_run=1",
            "--data.train=amlit.data.RecordIO",
            f"--data.train.path={rec}",
            f"--data.train.identity_list={tmp_path / 'ids.txt'}",
            f"--data.exclude_id_lists=[{tmp_path / 'ex.txt'}]",
            "--model.backbone.width_multiplier=1.0",
        ]
    )
    assert cli.trainer.global_step == 1 and cli.datamodule.num_classes == len(CASIA_IDS) - 1


def _run_main(args, monkeypatch, capsys) -> tuple[int, str, str]:
    """``amlit <args>`` in-process: (exit status, stdout, stderr)."""
    import sys

    from amlit.cli import main

    monkeypatch.setattr(sys, "argv", ["amlit", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_112x96_rec_is_read_alike_by_training_rec_info_and_rec_export(samples, tmp_path, monkeypatch, capsys):
    """Faces already cropped to 112x96 (property '8,112,96'): all three readers agree, every image survives."""
    cropped = [(cls, cv2.imencode(".jpg", expected_rgb(jpeg)[:, :, ::-1])[1].tobytes()) for cls, jpeg in samples]
    folder = write_insightface_rec(tmp_path / "rec96", cropped, image_size=(112, 96))
    (tmp_path / "ids.txt").write_text("\n".join(CASIA_IDS) + "\n")
    ids = f"--identity_list={tmp_path / 'ids.txt'}"
    code, out, _ = _run_main(["data", "rec-info", f"--path={folder}", ids, "--check_images=-1"], monkeypatch, capsys)
    assert code == 0 and f"decoded {len(samples)} images: {len(samples)} are 112x96 faces, 0 failed" in out
    assert "0 problem(s)" in out
    code, out, _ = _run_main(["data", "rec-export", f"--path={folder}", f"--output={tmp_path / 'tree'}", ids],
                             monkeypatch, capsys)  # fmt: skip
    assert code == 0 and len(list((tmp_path / "tree").rglob("*.jpg"))) == len(samples)
    table = RecordIO(folder, identity_list=tmp_path / "ids.txt").image_table((112, 96))
    assert len(table) == len(samples)
    code, _, err = _run_main(["data", "rec-export", f"--path={folder}", f"--output={tmp_path / 'c'}", "--crop=true"],
                             monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "--crop cuts insightface's 112x112 crops to 112x96, but" in err
    with pytest.raises(BadDataError, match=r"holds 112x96 \(HxW\) faces but data.image_size is 112x112"):
        RecordIO(folder).image_table((112, 112))


def test_a_property_size_the_images_do_not_have_is_reported_and_refused(samples, tmp_path, monkeypatch, capsys):
    """property '8,112,96' over 112x112 faces: served by the property, they were silently cut to 96 columns."""
    folder = write_insightface_rec(tmp_path / "rec", samples)
    (folder / "property").write_text(f"8,112,96\n{len(samples)}\n")
    message = r"property says the faces are 112x96 \(HxW\) but the images of .*train.rec are 112x112 \(key 1, the"
    code, out, _ = _run_main(["data", "rec-info", f"--path={folder}", "--check_images=-1"], monkeypatch, capsys)
    assert code == 2 and re.search(message, out) and "property's first line to 8,112,112" in out
    with pytest.raises(BadDataError, match=message):
        CasiaDataModule(RecordIO(folder), batch_size=4, num_workers=0, image_size=(112, 96))
    # A 112x96 set holding one 112x112 face: rec-info names it (training would cut it to 112x96 unnoticed).
    cropped = [(cls, cv2.imencode(".jpg", expected_rgb(jpeg)[:, :, ::-1])[1].tobytes()) for cls, jpeg in samples]
    mixed = write_insightface_rec(tmp_path / "mixed", [*cropped[:5], samples[5], *cropped[6:]], image_size=(112, 96))
    code, out, _ = _run_main(["data", "rec-info", f"--path={mixed}", "--check_images=-1"], monkeypatch, capsys)
    assert code == 2 and "train.rec key 6: image is 112x112 (HxW), not 112x96 like the set's faces" in out
    assert f"decoded {len(samples)} images: {len(samples) - 1} are 112x96 faces, 1 failed" in out


def test_damaged_sets_make_both_tools_exit_non_zero_naming_the_record(rec, samples, tmp_path, monkeypatch, capsys):
    offsets = read_idx(rec / "train.idx")
    data = bytearray((rec / "train.rec").read_bytes())
    image_start = offsets[5] + 8 + 24  # record 5: magic + lrec, IRHeader, then the JPEG
    data[image_start : image_start + 64] = bytes(64)  # its JPEG header is gone
    (rec / "train.rec").write_bytes(bytes(data))
    code, out, err = _run_main(["data", "rec-info", f"--path={rec}", "--check_images=-1"], monkeypatch, capsys)
    assert code == 2 and "train.rec key 5: not an image" in out
    assert "amlit: error:" in err and "1 problem(s), listed above" in err and "Traceback" not in err
    output = tmp_path / "tree"
    code, out, err = _run_main(["data", "rec-export", f"--path={rec}", f"--output={output}"], monkeypatch, capsys)
    assert code == 2 and "1 damaged record(s) not exported" in err and "key 5: not an image" in err
    assert len(list(output.rglob("*.jpg"))) == len(samples) - 1  # every other image is written


def test_rec_info_names_idx_keys_beyond_the_ranges_and_refuses_those_past_the_end(rec, capsys):
    # An .idx key outside record 0's ranges is never read, so its offset past the end of the .rec (an .idx of
    # another, longer .rec) went unnoticed: rec-info said 0 problems.
    idx = rec / "train.idx"
    size = (rec / "train.rec").stat().st_size
    last = max(read_idx(idx).index)
    with idx.open("a") as file:
        file.write(f"{last + 1}\t0\n")  # inside the file: reported, not a problem
    run_tool(["data", "rec-info", f"--path={rec}", "--check_images=0"])
    assert f"1 key(s) beyond record 0's ranges (e.g. [{last + 1}]), not read" in capsys.readouterr().out
    with idx.open("a") as file:
        file.write(f"{last + 2}\t{size + 4096}\n")
    with pytest.raises(BadDataError, match=r"1 problem\(s\)"):
        run_tool(["data", "rec-info", f"--path={rec}", "--check_images=0"])
    assert f"key {last + 2} at byte {size + 4096:,}" in capsys.readouterr().out


def test_a_truncated_rec_reports_the_identity_records_it_lost(rec, samples):
    data = (rec / "train.rec").read_bytes()
    first_identity = read_idx(rec / "train.idx")[len(samples) + 1]  # identity records follow the images
    (rec / "train.rec").write_bytes(data[: first_identity + 20])  # cut inside the first identity record
    with pytest.warns(UserWarning, match=r"8 identity records \(keys 25..32.*truncated or incomplete") as caught:
        table = RecordIO(rec).image_table((112, 96))
    assert len(caught) >= 1 and len(table) == len(samples)  # every image record is intact and kept
    with pytest.raises(BadDataError, match=r"identity records"):
        RecordIO(rec, on_bad="fail").image_table((112, 96))


@pytest.mark.parametrize("cut", ["inside_an_image_record", "between_image_records"])
def test_a_rec_truncated_in_its_images_is_refused_as_truncated_whatever_on_bad_says(
    rec, samples, monkeypatch, capsys, cut
):
    """A cut-off download is not a damaged record to skip: the classes at its end would be gone from training."""
    offsets = read_idx(rec / "train.idx")
    end = offsets[19] + (30 if cut == "inside_an_image_record" else 0)  # keys 19..24 (classes 6 and 7) lost
    (rec / "train.rec").write_bytes((rec / "train.rec").read_bytes()[:end])
    truncated = r"train.rec looks truncated: 6 of the 24 image records that train.idx lists start beyond its end"
    for on_bad in ("skip", "fail"):
        with pytest.raises(BadDataError, match=truncated) as caught:
            CasiaDataModule(RecordIO(rec, on_bad=on_bad), batch_size=4, num_workers=0)
        assert "property" not in str(caught.value) and "on_bad" not in str(caught.value)
    (rec / "property").unlink()  # the old advice ("delete the property file") does not make it trainable
    with pytest.raises(BadDataError, match=truncated):
        RecordIO(rec).image_table((112, 96))
    code, out, _ = _run_main(["data", "rec-info", f"--path={rec}"], monkeypatch, capsys)
    assert code == 2 and "looks truncated: 6 of the 24 image records" in out


def test_a_label_beyond_the_property_classes_names_its_record(samples, tmp_path, capsys):
    broken = [*samples[:-1], (len(CASIA_IDS) - 1, samples[-1][1])]
    folder = write_insightface_rec(tmp_path / "rec", broken)
    offsets = read_idx(folder / "train.idx")
    data = bytearray((folder / "train.rec").read_bytes())
    key = len(samples)  # the last image record: its scalar label (IRHeader bytes 4..8) becomes 99
    data[offsets[key] + 8 + 4 : offsets[key] + 8 + 8] = struct.pack("<f", 99.0)
    (folder / "train.rec").write_bytes(bytes(data))
    # The property or the record is wrong, amlit cannot tell which: refused whatever on_bad says, naming the record.
    message = rf"says 8 classes but .* have 100 \(largest label \+ 1\); 1 image record.* \(e.g. key {key} label 99\)"
    for on_bad in ("fail", "skip"):
        with pytest.raises(BadDataError, match=message):
            RecordIO(folder, on_bad=on_bad).image_table((112, 96))
    with pytest.raises(BadDataError, match=r"problem\(s\), listed above"):
        run_tool(["data", "rec-info", f"--path={folder}", "--check_images=0"])
    out = capsys.readouterr().out
    assert f"key {key} (byte {offsets[key]}): label 99 is out of range" in out and "have 100 (largest label" in out


def test_a_property_that_understates_the_classes_is_refused_by_fit_as_by_rec_info(samples, tmp_path, capsys):
    """property '6,...' on a .rec of 8 classes: training must not drop classes 6 and 7 with a mere warning."""
    folder = write_insightface_rec(tmp_path / "rec", samples)
    (folder / "property").write_text("6,112,112\n")
    message = r"property says 6 classes but the image records of .*train.rec have 8 \(largest label \+ 1\); 6 image"
    with pytest.raises(BadDataError, match=message + r".* if the records are right, correct the property"):
        CasiaDataModule(RecordIO(folder), batch_size=4, num_workers=0)
    with pytest.raises(BadDataError, match=r"train.rec: 7 problem\(s\), listed above"):
        run_tool(["data", "rec-info", f"--path={folder}", "--check_images=0"])
    assert "property says 6 classes but the image records of" in capsys.readouterr().out
