"""Output paths are checked before the work: one line and exit status 2, never a traceback (``amlit.outputs``)."""

from pathlib import Path

import pytest
from conftest import REPO
from test_faults import amlit_main

from amlit.errors import StorageError
from amlit.outputs import check_output


def test_check_output_names_what_is_in_the_way_and_creates_nothing(tmp_path):
    a_file = tmp_path / "config.yaml"
    a_file.write_text("x")
    with pytest.raises(StorageError, match=rf"--output={a_file}/x.json: {a_file} is a file, not a folder"):
        check_output(a_file / "x.json", "--output")
    with pytest.raises(StorageError, match=rf"--output={a_file}/deeper/x: {a_file} is a file, not a folder"):
        check_output(a_file / "deeper" / "x", "--output", folder=True)
    with pytest.raises(StorageError, match=rf"--output={a_file}: it is a file, not a folder"):
        check_output(a_file, "--output", folder=True)
    with pytest.raises(StorageError, match=rf"--output={tmp_path}: it is a folder; give a file name"):
        check_output(tmp_path, "--output")
    assert check_output(tmp_path / "new" / "deeper" / "x.json", "--output") == tmp_path / "new" / "deeper" / "x.json"
    assert check_output(tmp_path / "run", "--trainer.default_root_dir", folder=True) == tmp_path / "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # checked, nothing made or left behind


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, a folder no file can be made in")
def test_a_folder_that_cannot_be_written_is_refused_even_for_root():
    with pytest.raises(StorageError, match=r"--output=/proc/x.json: the folder /proc cannot be written"):
        check_output("/proc/x.json", "--output")


@pytest.mark.parametrize("folder", [False, True])
def test_a_path_that_cannot_even_be_looked_at_is_refused_not_a_traceback(tmp_path, folder):
    # stat() fails with another error than "missing" (ENAMETOOLONG here; EACCES for a parent one may not search)
    too_long = tmp_path / ("a" * 300) / "x.npz"
    with pytest.raises(StorageError, match=r"--output=\S*aaaa/x\.npz: File name too long; choose another path"):
        check_output(too_long, "--output", folder=folder)
    with pytest.raises(StorageError, match=r"aaaa\.npz: File name too long"):
        check_output(tmp_path / ("a" * 300 + ".npz"), "--output", folder=folder)


COMMANDS = {  # every input but the output is missing or bogus: the output is checked first
    "score lfw": ["score", "lfw", "--embeddings=missing.npz", "--pairs=missing.txt", "--output={out}.json"],
    "embed": ["embed", "--model=missing.ckpt", "--images=missing", "--output={out}.npz"],
    "verify": ["verify", "--model=missing.ckpt", "--image1=a.jpg", "--image2=b.jpg", "--output={out}.csv"],
    "data align": ["data", "align", "--raw_root={raw}", "--landmarks=missing.txt", "--output={out}"],
    "data pack": ["data", "pack", "--source_root=missing", "--output={out}"],
    "data rec-export": ["data", "rec-export", "--path=missing", "--output={out}"],
    "export onnx": ["export", "onnx", "--checkpoint=missing.ckpt", "--output={out}.onnx"],
    "fit": ["fit", f"--config={REPO / 'configs' / 'demo.yaml'}", "--trainer.default_root_dir={out}"],
    "figure psi": ["figure", "psi", "--output={out}.png"],
    "figure gradient": ["figure", "gradient", "--checkpoint=missing.ckpt", "--output={out}.png"],
    "figure toy": ["figure", "toy", "--fashion_mnist=missing", "--output={out}.png"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_output_under_a_file_in_one_line(command, tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "tiny.yaml"
    a_file.write_text("x")
    (tmp_path / "raw").mkdir()
    args = [arg.format(out=a_file / "x", raw=tmp_path / "raw") for arg in COMMANDS[command]]
    code, err = amlit_main(args, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("amlit: error: cannot write --") and f"{a_file} is a file, not a folder" in err
    assert len(err.strip().splitlines()) == 1
    assert err.count("cannot write") == 1 and err.count("choose another path") == 1, err  # said once, not wrapped
