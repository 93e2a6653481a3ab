import hashlib
import json
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
import torch
from conftest import damaged_in_the_middle
from torch.utils.data import default_collate

from amlit.cli import run_tool
from amlit.data import CasiaDataModule, ImageFolder, PackedShards
from amlit.data import packed as packed_module
from amlit.data.packed import pack
from amlit.errors import BadDataError, ConfigError, MissingDataError

SHARD_SIZE = 20  # the tiny tree's 72 images -> shards of 20, 20, 20, 12


def _decode(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def packed(tiny_tree, tmp_path_factory):
    output = tmp_path_factory.mktemp("packed")
    pack(tiny_tree / "casia", output, shard_size=SHARD_SIZE, workers=0, alignment_template="sphereface_112x96")
    return output


def test_every_image_reads_back_as_the_decoded_source_file(tiny_tree, packed):
    source = tiny_tree / "casia"
    table = PackedShards(packed).image_table((112, 96))
    expected = ImageFolder(source).image_table((112, 96))
    assert table.equals(expected)
    dataset = PackedShards(packed).dataset(table["name"], range(len(table)), (112, 96))
    for index, name in enumerate(table["name"]):
        image, target = dataset[index]
        assert image.dtype == torch.uint8 and target == index
        np.testing.assert_array_equal(image.numpy(), _decode(source / name))
    # A batch gathered across shards (unsorted, with a repeat) equals the items one by one.
    indices = [71, 3, 40, 3, 22, 0, 59]
    gathered = dataset.__getitems__(indices)
    for index, (image, target) in zip(indices, gathered, strict=True):
        assert target == index
        np.testing.assert_array_equal(image.numpy(), _decode(source / table["name"][index]))


def test_manifest_describes_the_pack(tiny_tree, packed):
    source = tiny_tree / "casia"
    manifest = json.loads((packed / "manifest.json").read_text())
    folders = sorted(p for p in source.iterdir() if p.is_dir())
    assert manifest["complete"] is True
    assert manifest["image_size"] == [112, 96] and manifest["alignment_template"] == "sphereface_112x96"
    assert manifest["identities"] == {p.name: len(list(p.glob("*.jpg"))) for p in folders}
    assert manifest["num_images"] == 72 and manifest["num_identities"] == 12 and manifest["skipped"] == []
    assert [entry["count"] for entry in manifest["shards"]] == [20, 20, 20, 12]
    for entry in manifest["shards"]:
        assert entry["sha256"] == _sha256(packed / entry["file"])
        assert (packed / entry["file"]).stat().st_size == entry["count"] * 112 * 96 * 3
    listing = sorted(f"{p.parent.name}/{p.name}" for p in source.glob("*/*.jpg"))
    lines = "".join(f"{n}\t{os.stat(source / n).st_size}\t{os.stat(source / n).st_mtime_ns}\n" for n in listing)
    assert manifest["source_checksum"] == hashlib.sha256(lines.encode()).hexdigest()


def test_interrupted_pack_resumes_without_redoing_finished_shards(tiny_tree, packed, tmp_path, monkeypatch):
    output = tmp_path / "pack"
    monkeypatch.setattr(packed_module, "CHUNK", 8)  # several chunks per shard, so a shard can be half-written
    real_decode, calls = packed_module._decode_chunk, []

    def decode_then_die(task):
        calls.append(task)
        if len(calls) == 5:  # chunks 1-3 make shard 0, chunk 4 is the start of shard 1
            raise KeyboardInterrupt
        return real_decode(task)

    monkeypatch.setattr(packed_module, "_decode_chunk", decode_then_die)
    with pytest.raises(KeyboardInterrupt):
        pack(tiny_tree / "casia", output, shard_size=SHARD_SIZE, workers=0)
    assert (output / "shard-00001.u8.tmp").stat().st_size == 8 * 112 * 96 * 3  # half a shard, under its temp name
    assert not (output / "shard-00001.u8").exists()
    manifest = json.loads((output / "manifest.json").read_text())
    assert not manifest["complete"] and [entry["shard"] for entry in manifest["shards"]] == [0]
    with pytest.raises(BadDataError, match=r"incomplete .*re-run the same `amlit data pack`"):
        PackedShards(output).image_table((112, 96))

    first_shard = (output / "shard-00000.u8").stat()
    monkeypatch.setattr(packed_module, "_decode_chunk", real_decode)
    run_tool(
        ["data", "pack", f"--source_root={tiny_tree / 'casia'}", f"--output={output}", "--shard_size=20", "--workers=0"]
    )
    assert (output / "shard-00000.u8").stat().st_mtime_ns == first_shard.st_mtime_ns  # kept, not rewritten
    assert not list(output.glob("*.tmp*"))
    resumed = json.loads((output / "manifest.json").read_text())
    clean = json.loads((packed / "manifest.json").read_text())
    assert [e["sha256"] for e in resumed["shards"]] == [e["sha256"] for e in clean["shards"]]
    assert resumed["identities"] == clean["identities"] and resumed["complete"]


def test_damaged_images_are_skipped_and_listed_or_stop_the_pack(tiny_tree, tmp_path):
    source = shutil.copytree(tiny_tree / "casia", tmp_path / "casia")
    identity = sorted(p for p in source.iterdir() if p.is_dir())[2]
    whole = (identity / "001.jpg").read_bytes()
    (identity / "001.jpg").write_bytes(whole[: len(whole) // 2])  # truncated: found by the listing
    (identity / "004.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(500) + b"\xff\xd9")  # intact ends, undecodable
    with pytest.warns(UserWarning, match=r"left out of the training data:\n  1 x truncated JPEG .*001.jpg$"):
        pack(source, tmp_path / "pack", shard_size=SHARD_SIZE, workers=0)
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert manifest["num_images"] == 70 and manifest["identities"][identity.name] == 4
    skipped = {item["name"]: item["reason"] for item in manifest["skipped"]}
    assert set(skipped) == {f"{identity.name}/001.jpg", f"{identity.name}/004.jpg"}
    assert "damaged or truncated JPEG" in skipped[f"{identity.name}/004.jpg"]
    table = PackedShards(tmp_path / "pack").image_table((112, 96))
    assert len(table) == 70 and f"{identity.name}/004.jpg" not in set(table["name"])

    (identity / "001.jpg").write_bytes(whole)  # only the undecodable file is left
    with pytest.raises(BadDataError, match=f"image .*{identity.name}/004.jpg: damaged or truncated JPEG"):
        pack(source, tmp_path / "failing", shard_size=SHARD_SIZE, workers=0, on_bad="fail")


def test_a_jpeg_damaged_in_the_middle_is_left_out_of_the_pack_by_name_or_stops_it(tiny_tree, tmp_path):
    source = shutil.copytree(tiny_tree / "casia", tmp_path / "casia")
    identity = sorted(p for p in source.iterdir() if p.is_dir())[1]
    (identity / "003.jpg").write_bytes(damaged_in_the_middle((identity / "003.jpg").read_bytes()))
    with pytest.warns(UserWarning, match=rf"{identity.name}/003.jpg"):
        pack(source, tmp_path / "pack", shard_size=SHARD_SIZE, workers=0)
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert manifest["num_images"] == 71 and manifest["identities"][identity.name] == 5
    (skipped,) = manifest["skipped"]
    assert skipped["name"] == f"{identity.name}/003.jpg" and "damaged JPEG data (libjpeg: Corrupt" in skipped["reason"]
    with pytest.raises(BadDataError, match=f"image .*{identity.name}/003.jpg: damaged JPEG data"):
        pack(source, tmp_path / "failing", shard_size=SHARD_SIZE, workers=0, on_bad="fail")


def test_packed_and_folder_sources_give_the_same_data_module(tiny_tree, packed):
    settings = dict(val_identities=4, val_pairs_per_fold=2, batch_size=8, num_workers=0)
    from_folder = CasiaDataModule(ImageFolder(tiny_tree / "casia"), **settings)
    from_pack = CasiaDataModule(PackedShards(packed), **settings)
    assert from_pack.num_classes == from_folder.num_classes == 8
    assert from_pack.train_table.equals(from_folder.train_table)
    assert from_pack.val_pairs.images == from_folder.val_pairs.images
    batches = []
    for dm in (from_folder, from_pack):
        torch.manual_seed(0)  # the same shuffle for both loaders
        batches.append(next(iter(dm.train_dataloader())))
    assert torch.equal(batches[0][1], batches[1][1])
    assert torch.equal(batches[0][0], batches[1][0]) and batches[1][0].shape == (8, 112, 96, 3)
    indices = [1, 14, 7]
    folder_items = default_collate([from_folder.eval_sets("val")[0].dataset[i] for i in indices])
    pack_items = default_collate(from_pack.eval_sets("val")[0].dataset.__getitems__(indices))
    assert torch.equal(folder_items[0], pack_items[0]) and torch.equal(folder_items[1], pack_items[1])


@pytest.mark.slow  # the decoding processes start from a fork server that imports torch (seconds)
def test_decoding_in_worker_processes_gives_the_same_shards(tiny_tree, packed, tmp_path):
    pack(tiny_tree / "casia", tmp_path / "pack", shard_size=SHARD_SIZE, workers=2)
    in_workers = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    in_process = json.loads((packed / "manifest.json").read_text())
    assert [e["sha256"] for e in in_workers["shards"]] == [e["sha256"] for e in in_process["shards"]]


def test_loader_workers_open_their_own_memory_maps(packed):
    source = PackedShards(packed)
    table = source.image_table((112, 96))
    dataset = source.dataset(table["name"], range(len(table)), (112, 96))
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=1)
    images, targets = next(iter(loader))
    np.testing.assert_array_equal(images.numpy(), np.stack([dataset[i][0].numpy() for i in range(16)]))
    assert targets.tolist() == list(range(16))


def test_spawned_loader_workers_map_the_shards_again_and_give_the_same_batches(packed):
    batches = []
    for options in (dict(num_workers=0), dict(num_workers=1, multiprocessing_context="spawn")):
        dm = CasiaDataModule(PackedShards(packed), batch_size=8, **options)
        loader = dm.train_dataloader()
        batches.append(next(iter(loader)))
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    assert torch.equal(batches[0][0], batches[1][0]) and torch.equal(batches[0][1], batches[1][1])
    # what a spawned worker receives: the shard paths, not the mapped records
    dataset = loader.dataset
    dataset[0]  # maps the shards in this process
    assert len(pickle.dumps(dataset)) < 50_000 < sum(path.stat().st_size for path, _ in dataset.shards)


def test_missing_incompatible_and_mismatched_packs_are_explained(tiny_tree, packed, tmp_path):
    with pytest.raises(MissingDataError, match=r"nowhere/manifest.json does not exist.*run `amlit data pack"):
        PackedShards(tmp_path / "nowhere").image_table((112, 96))
    with pytest.raises(MissingDataError, match=r"data.train.root: .*nowhere"):
        CasiaDataModule(PackedShards(tmp_path / "nowhere"))
    table = PackedShards(packed).image_table((112, 96))
    with pytest.raises(ConfigError, match=r"holds 112x96 images but data.image_size is 112x112"):
        PackedShards(packed).dataset(table["name"], range(len(table)), (112, 112))
    with pytest.raises(BadDataError, match=r"is 112x96 \(HxW\) but data.image_size is 112x112: .*insightface_112x112"):
        pack(tiny_tree / "casia", tmp_path / "wrong", image_size=(112, 112), workers=0)

    source = shutil.copytree(tiny_tree / "casia", tmp_path / "casia")
    output = tmp_path / "pack"
    pack(source, output, shard_size=SHARD_SIZE, workers=0)
    extra = next(p for p in source.iterdir() if p.is_dir()) / "999.jpg"
    shutil.copy(next(source.glob("*/*.jpg")), extra)
    with pytest.raises(ConfigError, match=r"another source or with other settings .*source_checksum.*--overwrite"):
        pack(source, output, shard_size=SHARD_SIZE, workers=0)
    pack(source, output, shard_size=SHARD_SIZE, workers=0, overwrite=True)
    assert len(PackedShards(output).image_table((112, 96))) == 73

    (output / "shard-00001.u8").write_bytes(b"short")
    with pytest.raises(BadDataError, match=r"shard-00001.u8 has 5 bytes, expected 645120 \(20 records of 32256"):
        PackedShards(output).image_table((112, 96))


def _damage(output, how: str) -> None:
    if how == "swapped indexes":  # two indexes of the same length: only their sha256 tells them apart
        first, second = (output / "shard-00000.npz").read_bytes(), (output / "shard-00001.npz").read_bytes()
        (output / "shard-00000.npz").write_bytes(second)
        (output / "shard-00001.npz").write_bytes(first)
    elif how == "flipped bit":
        index = bytearray((output / "shard-00001.npz").read_bytes())
        index[60] ^= 4  # inside names.npy: its CRC no longer matches
        (output / "shard-00001.npz").write_bytes(bytes(index))
    else:
        (output / how).unlink()


@pytest.mark.parametrize(
    ("how", "verify", "message"),
    [
        ("swapped indexes", True, r"shard-00000.npz does not match its index_sha256 in .*manifest.json"),
        ("flipped bit", True, r"shard-00001.npz does not match its index_sha256"),
        ("flipped bit", False, r"shard-00001.npz cannot be read \(Bad CRC-32 for file 'names.npy'\)"),
        ("shard-00002.npz", False, r"shard-00002.npz is missing"),
        ("shard-00002.u8", False, r"shard-00002.u8 is missing"),
    ],
)
def test_a_damaged_pack_names_the_damaged_file_and_the_command_that_repairs_it(
    tiny_tree, packed, tmp_path, how, verify, message
):
    output = shutil.copytree(packed, tmp_path / "pack")
    _damage(output, how)
    with pytest.raises(BadDataError, match=message) as error:
        PackedShards(output, verify=verify).image_table((112, 96))
    command = str(error.value).split("re-run `")[1].split("`")[0]
    assert command == (
        f"amlit data pack --source_root={tiny_tree / 'casia'} --output={output} --image_size=[112,96] "
        "--shard_size=20 --alignment_template=sphereface_112x96"
    )
    run_tool(command.split()[1:] + ["--workers=0"])  # re-packs the damaged shard, keeps the rest
    table = PackedShards(output, verify=True).image_table((112, 96))
    assert table.equals(PackedShards(packed).image_table((112, 96)))


def test_an_index_of_another_length_than_the_manifest_says_is_refused_without_verify(packed, tmp_path):
    output = shutil.copytree(packed, tmp_path / "pack")
    shutil.copy(output / "shard-00003.npz", output / "shard-00001.npz")  # 12 names where 20 records are
    with pytest.raises(BadDataError, match=r"shard-00001.npz lists 12 names and 12 identities but .* holds 20 rec"):
        PackedShards(output).image_table((112, 96))


@pytest.mark.parametrize("damage", ["cut short", "a list", "no shards", "an entry without count"])
def test_a_damaged_manifest_is_named_with_the_command_that_packs_again(packed, tmp_path, damage):
    """A manifest.json cut short by a copy, or edited, stopped the run with a JSONDecodeError/KeyError traceback."""
    output = shutil.copytree(packed, tmp_path / "pack")
    manifest = output / "manifest.json"
    text = manifest.read_text()
    content = json.loads(text)
    if damage == "cut short":
        manifest.write_text(text[:100])
    elif damage == "a list":
        manifest.write_text("[]")
    elif damage == "no shards":
        manifest.write_text(json.dumps({key: value for key, value in content.items() if key != "shards"}))
    else:
        del content["shards"][1]["count"]
        manifest.write_text(json.dumps(content))
    with pytest.raises(BadDataError, match=rf"{manifest} .*--output={output} --overwrite=true` to pack it again"):
        PackedShards(output).image_table((112, 96))


@pytest.mark.parametrize("where", [".", "packed", "a/b"])
def test_pack_refuses_an_output_inside_the_source_tree(tiny_tree, tmp_path, where):
    """--output=<source> wrote the shards among the identity folders; --output=<source>/packed made a folder that
    the next (resuming) pack of an identity_folders=any tree listed as a changed source and refused."""
    source = shutil.copytree(tiny_tree / "casia", tmp_path / "casia")
    before = sorted(source.rglob("*"))
    with pytest.raises(ConfigError, match=rf"--output={source / where} is inside --source_root={source}: "):
        pack(source, source / where, workers=0)
    assert sorted(source.rglob("*")) == before


def test_pack_names_a_source_root_that_is_a_file_or_absent_as_its_own_option(tmp_path):
    # The message came from the training source: "folder ... does not exist ... set data.train.root", for a file too
    (tmp_path / "list.txt").write_text("0000045\n")
    for root, what in ((tmp_path / "list.txt", "is a file"), (tmp_path / "nowhere", "does not exist")):
        with pytest.raises(MissingDataError, match=rf"--source_root={root} {what}: expected the aligned tree"):
            pack(root, tmp_path / "out", workers=0)
    assert not (tmp_path / "out").exists()
    with pytest.raises(MissingDataError, match=r"list.txt is a file: expected a tree"):
        ImageFolder(tmp_path / "list.txt").image_table((112, 96))


def test_pack_refuses_an_unknown_template_or_one_of_another_size_before_packing(tiny_tree, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown alignment template 'foo': choose one of sphereface_112x96, insi"):
        pack(tiny_tree / "casia", tmp_path / "unknown", workers=0, alignment_template="foo")
    wrong_size = r"sphereface_112x96 is for 112x96 crops but --image_size is 112x112: .*\(insightface_112x112\)"
    with pytest.raises(ConfigError, match=wrong_size):
        pack(tiny_tree / "casia", tmp_path / "wrong", image_size=(112, 112), alignment_template="sphereface_112x96")
    assert not (tmp_path / "unknown").exists() and not (tmp_path / "wrong").exists()


def test_file_names_that_are_not_utf8_are_packed_and_trained_on(tiny_tree, tmp_path):
    """GBK or Latin-1 names unzipped on Linux are not UTF-8: the listing checksums of pack and fit raised
    UnicodeEncodeError (surrogates not allowed) tracebacks."""
    source = shutil.copytree(tiny_tree / "casia", tmp_path / "casia")
    identity = sorted(p for p in source.iterdir() if p.is_dir())[0]
    gbk = os.fsdecode(b"\xd5\xc5\xc8\xfd.jpg")  # a Chinese name in GBK, as Python lists it
    os.rename(identity / "001.jpg", identity / gbk)
    name = f"{identity.name}/{gbk}"
    pack(source, tmp_path / "pack", shard_size=SHARD_SIZE, workers=0)
    settings = dict(batch_size=8, num_workers=0)
    from_folder = CasiaDataModule(ImageFolder(source), **settings)
    from_pack = CasiaDataModule(PackedShards(tmp_path / "pack"), **settings)
    assert name in set(from_folder.train_table["name"]) and from_pack.train_table.equals(from_folder.train_table)
    row = int(np.flatnonzero(from_pack.train_table["name"] == name)[0])
    dataset = from_pack.train_dataloader().dataset
    np.testing.assert_array_equal(dataset[row][0].numpy(), _decode(tiny_tree / "casia" / identity.name / "001.jpg"))
