import shutil

import cv2
import numpy as np
import pytest
import torch
from conftest import damaged_in_the_middle, write_verification_bin
from torch.utils.data import DataLoader

from amlit.data import CasiaDataModule, ImageFolder
from amlit.data.sources import ImageFiles
from amlit.errors import BadDataError, ConfigError, MissingDataError


def _copy(tree, tmp_path):
    return shutil.copytree(tree / "casia", tmp_path / "casia")


def test_identity_table_labels_and_exclusion(tiny_tree, tmp_path):
    identities = sorted(p.name for p in (tiny_tree / "casia").iterdir() if p.is_dir())
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"# two of ours and one that is not there\n{identities[0]}\n{identities[5]}\n9999999\n")
    dm = CasiaDataModule(ImageFolder(tiny_tree / "casia"), exclude_id_lists=[exclude], batch_size=4)
    assert dm.num_classes == 10
    assert dm.removed_identities == [identities[0], identities[5]]
    assert set(dm.train_table["label"]) == set(range(10))
    assert len(dm.train_table) == 10 * 6
    # Labels follow sorted identity order.
    first = dm.train_table.sort_values("identity").drop_duplicates("identity")
    assert first["label"].tolist() == list(range(10))


def test_held_out_identities_are_not_trained_on(tiny_tree):
    dm = CasiaDataModule(ImageFolder(tiny_tree / "casia"), val_identities=4, val_pairs_per_fold=3, batch_size=4)
    assert dm.num_classes == 8
    held_out = set(dm.val_table["identity"])
    assert len(held_out) == 4 and not held_out & set(dm.train_table["identity"])
    (val_set,) = dm.eval_sets("val")
    assert val_set.name == "heldout"
    assert dm.val_pairs.num_folds == 2 and len(dm.val_pairs) == 2 * 2 * 3
    with pytest.raises(ConfigError, match="val_identities=2: hold out at least 4"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), val_identities=2)
    assert dm.eval_sets("val")[0].num_images == len(dm.val_pairs.images)


def test_training_data_of_fewer_than_two_identities_is_refused_naming_the_data(tiny_tree, tmp_path):
    # One identity (a single folder, or all but one removed) reached the head, which said only "num_classes must be
    # >= 2" and named no data.
    one = tmp_path / "one"
    shutil.copytree(next(p for p in sorted((tiny_tree / "casia").iterdir()) if p.is_dir()), one / "0000001")
    with pytest.raises(BadDataError, match=rf"{one}.*1 identities left to train on; training needs at least 2"):
        CasiaDataModule(ImageFolder(one), batch_size=4)
    everyone = tmp_path / "everyone.txt"
    everyone.write_text("\n".join(p.name for p in (tiny_tree / "casia").iterdir() if p.is_dir()))
    with pytest.raises(BadDataError, match="0 identities left to train on"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), exclude_id_lists=[everyone], batch_size=4)


def test_resuming_on_a_renamed_identity_folder_is_refused(tiny_tree, tmp_path):
    """Same image count, other names: every class label after the renamed identity would shift by one."""
    root = _copy(tiny_tree, tmp_path)
    state = CasiaDataModule(ImageFolder(root), batch_size=4, num_workers=0).train_dataloader().state_dict()
    same = CasiaDataModule(ImageFolder(root), batch_size=4, num_workers=0)
    same.train_dataloader().load_state_dict(state)  # the same data resumes
    first = sorted(p for p in root.iterdir() if p.is_dir())[0]
    first.rename(root / "9999998")  # sorts last now
    renamed = CasiaDataModule(ImageFolder(root), batch_size=4, num_workers=0)
    with pytest.raises(ConfigError, match=r"trained on other images .*renamed, added or removed.*start a new run"):
        renamed.train_dataloader().load_state_dict(state)


def test_too_few_held_out_pairs_name_the_settings_to_change(tiny_tree):
    with pytest.raises(ConfigError) as caught:
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), val_identities=4, val_pairs_per_fold=100, batch_size=4)
    message = str(caught.value)
    # 2 folds of 2 identities with 6 images each: 2 * 15 matched pairs per fold.
    assert "a fold of 2 identities has only 30 possible matched pairs, 100 requested" in message
    assert "data.val_pairs_per_fold" in message and "data.val_identities" in message


def test_batches_are_uint8_nhwc_with_int64_targets(tiny_tree):
    dm = CasiaDataModule(
        ImageFolder(tiny_tree / "casia"),
        tiny_tree / "lfw",
        tiny_tree / "lfw" / "pairs.txt",
        batch_size=8,
        num_workers=0,
    )
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 112, 96, 3) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    (lfw,) = dm.eval_sets("test")
    images, indices = next(iter(dm.test_dataloader()[0]))
    assert indices.tolist() == list(range(len(indices)))
    # The loader returns RGB pixels exactly as decoded from the file.
    decoded = cv2.cvtColor(cv2.imread(str(tiny_tree / "lfw" / lfw.dataset.files[0])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(images[0].numpy(), decoded)


def test_missing_root_is_explained(tmp_path):
    with pytest.raises(MissingDataError, match=r"(?s)data.train.root: .*nowhere.*data.lfw_pairs: .*pairs.txt"):
        CasiaDataModule(ImageFolder(tmp_path / "nowhere"), tmp_path / "lfw", tmp_path / "pairs.txt")


def test_empty_folders_and_truncated_files_follow_the_bad_data_policy(tiny_tree, tmp_path):
    root = _copy(tiny_tree, tmp_path)
    (root / "0000001").mkdir()
    identity = sorted(p for p in root.iterdir() if p.is_dir())[1]
    whole = (identity / "001.jpg").read_bytes()
    (identity / "001.jpg").write_bytes(whole[: len(whole) // 2])  # a truncated copy
    (identity / "002.jpg").write_bytes(b"")
    expected = (
        r"(?s)1 x identity folder without usable images: 0000001/.*truncated JPEG.*: \d{7}/001.jpg.*"
        r"1 x empty file: \d{7}/002.jpg"
    )
    with pytest.raises(BadDataError, match=r"(?s)3 damaged or unusable entries:.*" + expected[4:]):
        CasiaDataModule(ImageFolder(root, on_bad="fail"))
    with pytest.warns(UserWarning, match=r"(?s)left out of the training data:.*" + expected[4:]):
        dm = CasiaDataModule(ImageFolder(root, on_bad="skip"))
    assert len(dm.train_table) == 12 * 6 - 2
    assert not dm.train_table["name"].str.startswith(f"{identity.name}/00[12]").any()


def test_an_undecodable_training_image_is_replaced_by_the_next_one_when_skipping(tiny_tree, tmp_path):
    root = _copy(tiny_tree, tmp_path)
    identity = sorted(p for p in root.iterdir() if p.is_dir())[0]
    # JPEG magic and end marker intact (the indexing check passes), garbage in between: decoding fails.
    (identity / "001.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"junk" * 10 + b"\xff\xd9")
    source = ImageFolder(root)
    dataset = source.dataset([f"{identity.name}/001.jpg", f"{identity.name}/002.jpg"], [3, 4], (112, 96))
    with pytest.warns(UserWarning, match=r"skipping an unreadable training image: image .*001.jpg: damaged"):
        image, label = dataset[0]
    assert label == 4 and image.shape == (112, 96, 3)
    with pytest.raises(BadDataError, match=r"image .*001.jpg: damaged"):
        ImageFolder(root, on_bad="fail").dataset([f"{identity.name}/001.jpg"], [0], (112, 96))[0]


def test_a_jpeg_damaged_in_the_middle_follows_the_bad_data_policy_in_loader_workers(tiny_tree, tmp_path):
    """libjpeg only warns on stderr (no file named) and guesses the rest: the image is damaged, by name."""
    root = _copy(tiny_tree, tmp_path)
    identity = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (identity / "001.jpg").write_bytes(damaged_in_the_middle((identity / "001.jpg").read_bytes()))
    names = [f"{identity.name}/001.jpg", f"{identity.name}/002.jpg"]
    dataset = ImageFolder(root).dataset(names, [3, 4], (112, 96))
    with pytest.warns(UserWarning, match=r"skipping an unreadable training image: image .*001.jpg: damaged JPEG data"):
        image, label = dataset[0]
    assert label == 4 and image.shape == (112, 96, 3)
    failing = ImageFolder(root, on_bad="fail").dataset(names, [0, 1], (112, 96))
    loader = DataLoader(failing, batch_size=2, num_workers=1)  # decoded in a forked worker process
    with pytest.raises(BadDataError, match=r"image .*001.jpg: damaged JPEG data \(libjpeg: Corrupt JPEG data"):
        next(iter(loader))


def test_missing_lfw_images_and_half_configured_lfw(tiny_tree, tmp_path):
    lfw = shutil.copytree(tiny_tree / "lfw", tmp_path / "lfw")
    victim = CasiaDataModule(ImageFolder(tiny_tree / "casia"), lfw, lfw / "pairs.txt").lfw.images[0]
    (lfw / victim).unlink()
    (line,) = [n for n, text in enumerate((lfw / "pairs.txt").read_text().splitlines(), 1) if _names(text, victim)][:1]
    with pytest.raises(MissingDataError, match=rf"pairs.txt:{line}: names {victim}, .*\(1 of the \d+ images"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), lfw, lfw / "pairs.txt")
    with pytest.raises(ConfigError, match=r"set both data\.lfw_root and data\.lfw_pairs"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), lfw_root=lfw)
    with pytest.raises(ConfigError, match="no test set configured"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia")).eval_sets("test")


def _names(line: str, image: str) -> bool:
    """Whether a pairs.txt line names ``image`` (Name/Name_%04d.jpg)."""
    fields = line.split()
    named = {3: [(0, 1), (0, 2)], 4: [(0, 1), (2, 3)]}.get(len(fields), [])
    return any(f"{fields[a]}/{fields[a]}_{int(fields[b]):04d}.jpg" == image for a, b in named)


def test_wrong_size_and_corrupt_images_name_the_file(tiny_tree, tmp_path):
    root = _copy(tiny_tree, tmp_path)
    identity = sorted(p for p in root.iterdir() if p.is_dir())[0]
    cv2.imwrite(str(identity / "001.jpg"), np.zeros((250, 250, 3), np.uint8))
    (identity / "002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = ImageFiles(root, [f"{identity.name}/001.jpg", f"{identity.name}/002.jpg"], [0, 0], (112, 96))
    with pytest.raises(BadDataError, match=r"001.jpg is 250x250 \(HxW\) but data.image_size is 112x96: align"):
        dataset[0]
    with pytest.raises(BadDataError, match=r"image .*002.jpg: not an image"):
        dataset[1]


def test_a_blufr_config_of_other_than_10_trials_is_warned_of_by_the_data_module(tiny_tree, tmp_path):
    from dataclasses import replace

    from amlit.eval.blufr import read_blufr_config, write_blufr_config

    lfw = tiny_tree / "lfw"
    config = read_blufr_config(lfw / "blufr_config.mat")
    small = tmp_path / "two_trials.mat"
    cells = ("train_index", "test_index", "gallery_index", "probe_index")
    write_blufr_config(small, replace(config, **{cell: getattr(config, cell)[:2] for cell in cells}))
    with pytest.warns(UserWarning, match=r"two_trials\.mat has 2 trials, the official .* has 10: these are not"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), lfw, lfw / "pairs.txt", blufr_config=small)


def test_blufr_eval_set_embeds_the_config_images_from_the_lfw_tree(tiny_tree, tmp_path):
    from amlit.eval.blufr import read_blufr_config

    lfw = tiny_tree / "lfw"
    config = lfw / "blufr_config.mat"
    dm = CasiaDataModule(ImageFolder(tiny_tree / "casia"), lfw, lfw / "pairs.txt", blufr_config=config)
    lfw_set, blufr_set = dm.eval_sets("test")
    assert (lfw_set.name, blufr_set.name) == ("lfw", "blufr")
    names = read_blufr_config(config).image_list
    assert blufr_set.num_images == len(names)
    assert [path.split("/")[1] for path in blufr_set.dataset.files] == names  # the config's order, in folders
    # Features that separate identities perfectly give VR = DIR = 1 in every trial.
    people = sorted({name.rsplit("_", 1)[0] for name in names})
    labels = torch.tensor([people.index(name.rsplit("_", 1)[0]) for name in names])
    features = torch.nn.functional.one_hot(labels, len(people)).float()
    metrics = blufr_set.evaluate(features)
    assert metrics["vr@far=1e-3_mean"] == 1.0 and metrics["dir@far=1e-2,rank=1_mean"] == 1.0
    with pytest.raises(ConfigError, match="blufr_config needs the LFW images"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), blufr_config=config)
    copy = shutil.copytree(lfw, tmp_path / "lfw")
    (victim,) = sorted(set(blufr_set.dataset.files) - set(dm.lfw.images))[:1]  # not in pairs.txt
    (copy / victim).unlink()
    with pytest.raises(MissingDataError, match=r"1 of the \d+ images of the BLUFR list"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), copy, copy / "pairs.txt", blufr_config=config)


def test_manifest_reports_what_was_removed(tiny_tree, tmp_path):
    identities = sorted(p.name for p in (tiny_tree / "casia").iterdir() if p.is_dir())
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"{identities[3]}\n9999999\n")
    manifest = CasiaDataModule(ImageFolder(tiny_tree / "casia"), exclude_id_lists=[exclude]).manifest()
    assert manifest["removed_identities"] == [identities[3]] and manifest["listed_but_absent"] == ["9999999"]
    assert manifest["num_classes"] == 11 and manifest["identities"] == 12
    assert manifest["exclude_id_lists"] == [str(exclude)]


def test_megaface_eval_set_lists_probes_then_distractors_and_scores_them(tiny_tree, tmp_path, monkeypatch):
    from amlit.eval.megaface import evaluate_megaface

    lfw, casia = tiny_tree / "lfw", tiny_tree / "casia"
    names = tmp_path / "names.txt"
    people = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    names.write_text("\n".join(people[:5]) + "\n")
    dm = CasiaDataModule(
        ImageFolder(casia), lfw, lfw / "pairs.txt", megaface_probes=lfw, megaface_distractors=casia,
        megaface_identities=names,
    )  # fmt: skip
    (megaface,) = [s for s in dm.eval_sets("test") if s.name == "megaface"]
    probes = [f for f in megaface.dataset.files if f.startswith(str(lfw))]
    assert len(probes) == 5 * 3 and all(f.split("/")[-2] in people[:5] for f in probes)
    assert megaface.dataset.files[len(probes) :] == sorted(str(p) for p in casia.glob("*/*.jpg"))
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([people.index(f.split("/")[-2]) for f in probes])
    features = torch.randn(megaface.num_images, 8, generator=generator)
    features[:15] += 1.5 * torch.randn(len(people), 8, generator=generator)[labels]  # identity signal
    features = torch.nn.functional.normalize(features)
    expected = evaluate_megaface(features[:15], labels, features[15:], progress=False)
    result = megaface.evaluate(features)
    assert result["rank1"] == expected["rank1"] and result["tar@far=1e-6"] == expected["tar@far=1e-6"]
    assert 0 < result["rank1"] < 1  # neither trivial outcome
    # Relative tree paths (as in the configs) work too: every listed file is absolute and opens.
    monkeypatch.chdir(tiny_tree)
    relative = CasiaDataModule(ImageFolder(casia), megaface_probes="lfw", megaface_distractors="casia")
    (megaface,) = relative.eval_sets("test")
    assert megaface.dataset.files[0].startswith("/") and megaface.dataset[0][0].shape == (112, 96, 3)
    with pytest.raises(ConfigError, match=r"set both data\.megaface_probes and data\.megaface_distractors"):
        CasiaDataModule(ImageFolder(casia), megaface_probes=lfw)


def test_verification_bins_are_test_sets_named_after_their_files(tiny_tree, tmp_path):
    lfw = tiny_tree / "lfw"
    bin_path, pairs = write_verification_bin(lfw, tmp_path / "cfp_fp.bin")
    dm = CasiaDataModule(ImageFolder(tiny_tree / "casia"), verification_bins=[bin_path])  # no LFW tree needed
    (cfp,) = dm.eval_sets("test")
    assert cfp.name == "cfp_fp" and cfp.num_images == 2 * len(pairs) and cfp.views == "sum"
    image, index = cfp.dataset[1]
    expected = cv2.cvtColor(cv2.imread(str(lfw / pairs.images[pairs.right[0]])), cv2.COLOR_BGR2RGB)
    assert index == 1 and np.array_equal(image.numpy(), expected)  # 112x112 -> 112x96 undoes the padding exactly
    with pytest.raises(ConfigError, match="test sets need distinct names"):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), lfw, lfw / "pairs.txt", verification_bins=[
            shutil.copy(bin_path, tmp_path / "lfw.bin")
        ])  # fmt: skip
    for protocol, name in (("BLUFR", "blufr"), ("MegaFace", "megaface")):  # refused even when that protocol is off
        renamed = shutil.copy(bin_path, tmp_path / f"{name}.bin")
        with pytest.raises(ConfigError, match=rf"{name}\.bin: .*'{name}' is the {protocol} test set's name: .*"
                           rf"test/{name}/\.\.\. .*rename the file, e.g. {name}\.bin -> {name}_bin\.bin"):  # fmt: skip
            CasiaDataModule(ImageFolder(tiny_tree / "casia"), verification_bins=[bin_path, renamed])
    sphereface = CasiaDataModule(
        ImageFolder(tiny_tree / "casia"),
        lfw,
        lfw / "pairs.txt",
        verification_bins=[bin_path],
        pair_protocol="sphereface",
    )
    assert [s.views for s in sphereface.eval_sets("test")] == ["concat", "concat"]


def test_counts_are_stated_before_and_after_removal(tiny_tree, tmp_path, caplog):
    import logging

    identities = sorted(p.name for p in (tiny_tree / "casia").iterdir() if p.is_dir())
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"{identities[0]}\n{identities[1]}\n")
    with caplog.at_level(logging.INFO):
        CasiaDataModule(ImageFolder(tiny_tree / "casia"), exclude_id_lists=[exclude])
    (report,) = [r.getMessage() for r in caplog.records if "training classes" in r.getMessage()]
    assert ": 12 identities, 72 images; removed 2 listed identities (12 images; lists: " in report
    assert ") -> 10 identities, 60 images" in report and report.endswith("-> 10 training classes, 60 training images")


def test_an_image_that_fails_in_a_loader_worker_is_one_message_and_exit_2(tiny_tree, tmp_path, monkeypatch, capsys):
    """The damage is found only when decoding (indexing checks switched off): the error is raised in a DataLoader
    worker process, and still reaches the user as one line naming the file, exit status 2, no traceback."""
    import sys

    from conftest import paper_fit_args

    from amlit.cli import main

    root = _copy(tiny_tree, tmp_path)
    victim = sorted(root.glob("*/*.jpg"))[0]
    victim.write_text("an HTML error page saved as a JPEG")
    monkeypatch.chdir(tmp_path)
    args = [*paper_fit_args(tmp_path), "--trainer.max_steps=20", f"--data.train.root={root}"]
    args += ["--data.train.check_files=false", "--data.train.on_bad=fail", "--data.batch_size=72"]
    monkeypatch.setattr(sys, "argv", ["amlit", *args, "--data.num_workers=1"])
    with pytest.raises(SystemExit) as info:
        main()
    error = capsys.readouterr().err
    assert info.value.code == 2
    (line,) = [line for line in error.splitlines() if line.startswith("amlit: error:")]
    expected = f"amlit: error: image {victim}: not an image: its first bytes are not those of a JPEG, PNG, GIF"
    assert line == expected + ", BMP, PGM/PPM/PBM, TIFF, WebP file"
    assert "Traceback" not in error and "DataLoader worker" not in error
