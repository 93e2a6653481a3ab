"""ImageFolder on trees as they come in the wild: other formats, folders that are not identities, files that are not
images, images of another size. Each case builds the tree and checks the exact outcome (what is trained on, what is
reported, what is refused) and that every valid image is still there."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from amlit.data import CasiaDataModule, ImageFolder
from amlit.errors import BadDataError

SIZE = (112, 96)


def face(seed: int, size=SIZE, gray: bool = False) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return image[:, :, 0] if gray else image


def write(path, image: np.ndarray | bytes) -> None:
    """Write ``image`` in the format of ``path``'s extension (GIF through Pillow, which OpenCV cannot write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, bytes):
        path.write_bytes(image)
    elif path.suffix == ".gif":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="GIF")
        path.write_bytes(buffer.getvalue())
    else:
        assert cv2.imwrite(str(path), image), path


def tree(root, identities: dict[str, int], extension=".jpg", size=SIZE, gray=False) -> list[str]:
    """``root/<identity>/<nnn><extension>``; returns the relative names written."""
    names = []
    for k, (identity, count) in enumerate(identities.items()):
        for n in range(1, count + 1):
            name = f"{identity}/{n:03d}{extension}"
            write(root / name, face(100 * k + n, size, gray))
            names.append(name)
    return names


@pytest.mark.parametrize(("extension", "gray"), [(".pgm", True), (".gif", True), (".ppm", False), (".webp", False)])
def test_gray_and_other_formats_train_as_three_channel_faces(tmp_path, extension, gray):
    names = tree(tmp_path, {"0000045": 3, "0000099": 2}, extension, gray=gray)
    source = ImageFolder(tmp_path)
    table = source.image_table(SIZE)
    assert sorted(table["name"]) == sorted(names) and source.skipped == []
    dataset = source.dataset(table["name"], range(len(table)), SIZE)
    image, _ = dataset[0]
    assert image.shape == (*SIZE, 3)
    if gray:
        assert (image[..., 0] == image[..., 2]).all()


def test_folders_that_are_not_identities_are_left_out_and_named(tmp_path):
    names = tree(tmp_path, {"0000045": 3, "0000099": 2, "notes": 2})
    (tmp_path / "README.txt").write_text("how this tree was made")  # files beside the identities are ignored
    (tmp_path / ".cache").mkdir()  # hidden entries too
    source = ImageFolder(tmp_path)
    with pytest.warns(UserWarning, match=r"left out of the training data:\n  1 x not an identity folder.*: notes/"):
        table = source.image_table(SIZE)
    assert sorted(table["identity"].unique()) == ["0000045", "0000099"]
    assert sorted(table["name"]) == sorted(n for n in names if not n.startswith("notes/"))
    # Without any 7-digit folder every folder is an identity (e.g. a tree of names); or ask for it explicitly.
    names_tree = tmp_path / "names"
    named = tree(names_tree, {"Aaron_Eckhart": 2, "Zico": 2})
    assert sorted(ImageFolder(names_tree).image_table(SIZE)["name"]) == sorted(named)
    assert len(ImageFolder(tmp_path, identity_folders="any").image_table(SIZE)) == len(names)
    with pytest.raises(BadDataError, match=r"no usable images.*\n  2 x not an identity folder"):
        ImageFolder(names_tree, identity_folders="casia").image_table(SIZE)


def test_files_that_are_not_images_never_count(tmp_path):
    names = tree(tmp_path, {"0000045": 3, "0000099": 3})
    (tmp_path / "0000045" / "004.jpg").write_text("Not a JPEG: an HTML error page saved under the image's name")
    (tmp_path / "0000045" / "005.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "0000099" / "sub").mkdir()
    source = ImageFolder(tmp_path)
    with pytest.warns(UserWarning, match="left out of the training data") as caught:
        table = source.image_table(SIZE)
    message = str(caught[0].message)
    assert "1 x not an image: its first bytes are not those of a JPEG" in message and "0000045/004.jpg" in message
    assert "not an image extension (accepted: .jpg .jpeg .png .bmp .gif" in message and "0000045/005.heic" in message
    assert "folder inside an identity folder" in message and "0000099/sub/" in message
    assert sorted(table["name"]) == sorted(names)  # every valid image, nothing else
    # A file that is not an image is damage: on_bad=fail stops naming it; layout entries never stop a run.
    with pytest.raises(BadDataError, match=r"1 damaged or unusable entries:\n  1 x not an image.*0000045/004.jpg"):
        ImageFolder(tmp_path, on_bad="fail").image_table(SIZE)


@pytest.mark.parametrize("check_files", [True, False])
def test_a_tree_of_another_size_is_refused_in_one_message(tmp_path, check_files):
    tree(tmp_path, {"0000045": 4, "0000099": 4}, size=(112, 92))
    with pytest.raises(BadDataError) as info:
        CasiaDataModule(ImageFolder(tmp_path, check_files=check_files))
    message = str(info.value)
    assert "images checked are not 112x96 (HxW)" in message
    assert "is 112x92 (HxW) but data.image_size is 112x96" in message
    assert "amlit data align --template=sphereface_112x96" in message
    assert "--data.image_size=[112,92]" in message


def test_that_hint_works_a_tree_of_another_size_trains_with_data_image_size(tmp_path, monkeypatch):
    from conftest import paper_fit_args

    from amlit.cli import run_cli

    monkeypatch.chdir(tmp_path)  # the config's relative run folders land here
    tree(tmp_path / "casia", {f"{k:07d}": 3 for k in range(1, 5)}, size=(112, 92))
    args = [*paper_fit_args(tmp_path), "--trainer.fast_dev_run=1", f"--data.train.root={tmp_path / 'casia'}"]
    cli = run_cli([*args, "--data.image_size=[112,92]"])
    assert cli.trainer.global_step == 1 and cli.model.backbone.input_size == (112, 92)


def test_a_few_images_of_another_size_are_left_out_and_listed(tmp_path):
    names = tree(tmp_path, {"0000045": 4, "0000099": 4})
    write(tmp_path / "0000045" / "009.jpg", face(9, (250, 250)))
    with pytest.warns(UserWarning, match=r"1 x 250x250 \(HxW\), not the configured 112x96: 0000045/009.jpg"):
        table = ImageFolder(tmp_path).image_table(SIZE)
    assert sorted(table["name"]) == sorted(names)
    with pytest.raises(BadDataError, match=r"0000045/009.jpg"):
        ImageFolder(tmp_path, on_bad="fail").image_table(SIZE)


def test_a_linked_identity_folder_is_one_identity_not_two(tmp_path):
    """A tree assembled with links (``ln -s 0000045 0000046``, or two links to one folder) must not train one
    person as two classes, which the loss would pull apart; folders linked from outside the tree are ordinary."""
    names = tree(tmp_path / "tree", {"0000045": 3, "0000099": 2})
    outside = tree(tmp_path / "elsewhere", {"0000120": 2})
    root = tmp_path / "tree"
    (root / "0000046").symlink_to("0000045")  # a link sorted after its target
    (root / "0000001").symlink_to(root / "0000099")  # and one sorted before it: the real folder keeps the images
    (root / "0000120").symlink_to(tmp_path / "elsewhere" / "0000120")
    source = ImageFolder(root)
    with pytest.warns(UserWarning, match="left out of the training data") as caught:
        table = source.image_table(SIZE)
    assert sorted(table["identity"].unique()) == ["0000045", "0000099", "0000120"]
    assert sorted(table["name"]) == sorted(names + outside)
    message = str(caught[0].message)
    assert "the same folder as 0000045/ (a link)" in message and "0000046/" in message
    assert "the same folder as 0000099/ (a link)" in message and "0000001/" in message
    assert [entry.damaged for entry in source.skipped] == [False, False]  # layout: never stops an on_bad=fail run
    # Two links to one folder outside the tree: the first name keeps it.
    (root / "0000121").symlink_to(tmp_path / "elsewhere" / "0000120")
    with pytest.warns(UserWarning, match=r"0000121/"):
        table = ImageFolder(root, on_bad="fail").image_table(SIZE)
    assert sorted(table["identity"].unique()) == ["0000045", "0000099", "0000120"]
    # A link whose target is gone (a disk not mounted) is named, and is damage: on_bad=fail stops.
    (root / "0000130").symlink_to(tmp_path / "unmounted" / "0000130")
    with pytest.raises(BadDataError, match=r"a link to something that does not exist.*0000130"):
        ImageFolder(root, on_bad="fail").image_table(SIZE)
