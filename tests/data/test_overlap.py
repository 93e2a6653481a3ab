import pandas as pd
import pytest

from amlit.data.overlap import assign_labels, read_id_list, remove_identities
from amlit.errors import BadDataError


def test_read_id_list_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("# header\n0000045\n\n0000099  # trailing comment\n")
    assert read_id_list(path) == ["0000045", "0000099"]


def test_bad_id_names_file_and_line(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("0000045\n45\n")
    with pytest.raises(BadDataError, match=r"ids.txt:2: expected a 7-digit identity id"):
        read_id_list(path)


def test_real_paper_list_has_59_ids_and_sphereface_3(shared_data):
    ids = read_id_list(shared_data / "overlap" / "casia_remove_59_ids.txt")
    assert len(ids) == len(set(ids)) == 59
    assert read_id_list(shared_data / "overlap" / "sphereface_lfw_overlap_3_ids.txt") == [
        "0166921",
        "1056413",
        "1193098",
    ]
    # Applied to the full CASIA identity list the paper's class count comes out: 10,575 - 59 = 10,516.
    names = (shared_data / "casia" / "webface_id_name_list.txt").read_text(encoding="utf-8").split("\n")
    table = pd.DataFrame({"identity": [line.split()[0] for line in names if line.strip()]})
    kept, removed, absent = remove_identities(table, ids)
    assert (len(table), len(removed), absent, kept["identity"].nunique()) == (10_575, 59, [], 10_516)


def test_remove_and_relabel():
    table = pd.DataFrame({"identity": ["0000003", "0000001", "0000002", "0000001"], "path": list("abcd")})
    kept, removed, absent = remove_identities(table, ["0000002", "0000009"])
    assert removed == ["0000002"] and absent == ["0000009"]
    labelled = assign_labels(kept)
    assert labelled["label"].tolist() == [1, 0, 0]  # contiguous, in sorted identity order


def test_name_matching_finds_exactly_the_42_facescrub_ids(shared_data):
    from amlit.data.overlap import match_names, read_id_name_list

    id_names = read_id_name_list(shared_data / "casia" / "webface_id_name_list.txt")
    assert len(id_names) == 10_575
    facescrub = (shared_data / "megaface" / "facescrub_set1_names_80.txt").read_text(encoding="utf-8").split("\n")
    facescrub = [n for n in facescrub if n.strip() and not n.startswith("#")]
    assert len(facescrub) == 80
    expected = pd.read_csv(shared_data / "overlap" / "webface_facescrub_overlap_42.csv", comment="#", dtype=str)
    found = match_names(id_names, facescrub)
    assert sorted(found["identity"]) == sorted(expected.iloc[:, 0].str.strip())
    assert len(found) == 42
    # LFW: only 6 names match exactly (the paper's 17 needed fuzzy matching and review).
    lfw = [line.split("\t")[0] for line in (shared_data / "lfw" / "lfw-names.txt").read_text().splitlines()]
    assert len(match_names(id_names, lfw)) == 6


def test_name_list_errors_name_the_line(tmp_path):
    from amlit.data.overlap import read_id_name_list

    path = tmp_path / "names.txt"
    path.write_text("0000045 Bruce_Lee\nBruce_Lee 0000045\n")
    with pytest.raises(BadDataError, match=r"names.txt:2: expected '<7-digit id> <Name>'"):
        read_id_name_list(path)


def test_amlit_data_overlaps_prints_and_writes_the_candidates(shared_data, tmp_path, capsys):
    from amlit.cli import run_tool

    facescrub = shared_data / "megaface" / "facescrub_set1_names_80.txt"
    lfw = shared_data / "lfw" / "lfw-names.txt"
    output = tmp_path / "candidates.txt"
    found = run_tool(
        ["data", "overlaps", f"--id_names={shared_data / 'casia' / 'webface_id_name_list.txt'}",
         f"--names+={facescrub}", f"--names+={lfw}", f"--output={output}"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert f"{facescrub}: 42 CASIA identities match by name" in printed
    assert f"{lfw}: 6 CASIA identities match by name" in printed
    written = read_id_list(output)
    assert written == sorted(set(found["identity"])) and len(written) == len(found) == 48
    # one list given alone is that list (a list type alone made jsonargparse read the file as a list of paths)
    one = run_tool(
        ["data", "overlaps", f"--id_names={shared_data / 'casia' / 'webface_id_name_list.txt'}", f"--names={lfw}"]
    )
    assert one.reset_index(drop=True).equals(found[found["source"] == str(lfw)].reset_index(drop=True))


def test_an_id_listed_twice_is_kept_once_with_a_warning_naming_the_line(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("0000045\n# comment\n0000099\n0000045  # again\n")
    with pytest.warns(UserWarning, match=r"ids.txt:4: 0000045 is listed again \(first on line 1\)"):
        assert read_id_list(path) == ["0000045", "0000099"]


def test_names_with_spaces_and_tab_separated_fields_are_read_whole(tmp_path):
    from amlit.data.overlap import read_names

    path = tmp_path / "names.txt"
    # FaceScrub actors list (name TAB id TAB url), lfw-names.txt (name TAB count), a plain name with spaces,
    # an underscored name, and lfw-names.txt with its TAB turned into a space.
    path.write_text("Aaron Eckhart\t1\thttp://x/a.jpg\nAJ_Cook\t1\nAdam Brody\nBruce_Lee\nAJ_Lamas 3\n")
    assert read_names(path) == ["Aaron Eckhart", "AJ_Cook", "Adam Brody", "Bruce_Lee", "AJ_Lamas"]


def test_find_overlaps_matches_names_with_spaces(tmp_path, capsys):
    from amlit.data.overlap import find_overlaps

    id_names = tmp_path / "webface_id_name_list.txt"
    id_names.write_text("0111013 Adam_Brody\n0000045 Bruce_Lee\n0000099 Aaron_Eckhart_Jr.\n")
    actors = tmp_path / "facescrub_actors.txt"
    actors.write_text("Aaron Eckhart\t1\thttp://x\nAdam Brody\t2\thttp://y\n")
    output = tmp_path / "ov.txt"
    found = find_overlaps(id_names, [actors], output)
    assert found["identity"].tolist() == ["0111013"]
    assert read_id_list(output) == ["0111013"]
    assert f"{actors}: 1 CASIA identities match by name" in capsys.readouterr().out


def test_find_overlaps_warns_when_no_name_of_a_list_matches(tmp_path):
    from amlit.data.overlap import find_overlaps

    id_names = tmp_path / "webface_id_name_list.txt"
    id_names.write_text("0111013 Adam_Brody\n")
    names = tmp_path / "names.csv"
    names.write_text("Adam;Brody;2\nBruce;Lee;3\n")  # a format it cannot read as names
    with pytest.warns(UserWarning, match=r"names.csv: none of its 2 names matches a CASIA name \(e.g. read 'Adam;"):
        assert find_overlaps(id_names, [names]).empty


def test_an_id_list_saved_with_a_byte_order_mark_reads_its_first_id(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("\ufeff0000045\n0000099\n", encoding="utf-8")
    assert read_id_list(path) == ["0000045", "0000099"]


def test_a_list_that_is_not_utf8_is_named_with_its_line_not_a_unicode_traceback(tmp_path):
    from amlit.data.overlap import read_names

    latin1 = tmp_path / "names.txt"
    latin1.write_bytes("Adam_Brody\nZo\xeb_Saldana\n".encode("latin-1"))
    with pytest.raises(BadDataError, match=r"names.txt:2: not UTF-8 text \(byte 0xeb .*another encoding\): save it"):
        read_names(latin1)
    utf16 = tmp_path / "ids.txt"
    utf16.write_text("0000045\n0000099\n", encoding="utf-16")  # Windows Notepad's "Unicode"
    with pytest.raises(BadDataError, match=r"ids.txt:1: not UTF-8 text .*UTF-16 \(Windows 'Unicode'\)"):
        read_id_list(utf16)
