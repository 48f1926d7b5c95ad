import pytest

from vidgen.files import replace_folder, write_atomic


def test_write_atomic_replaces_or_leaves_nothing(tmp_path):
    path = tmp_path / "a.txt"
    assert write_atomic(path, lambda tmp: tmp.write_text("one")) == path
    write_atomic(path, lambda tmp: tmp.write_text("two"))
    assert path.read_text() == "two"

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_replace_folder_swaps_in_the_new_folder(tmp_path):
    for n in range(2):  # first onto nothing, then over the old folder
        tmp = tmp_path / ".new"
        tmp.mkdir()
        (tmp / f"file{n}").write_text(str(n))
        assert replace_folder(tmp, tmp_path / "out") == tmp_path / "out"
        assert [p.name for p in (tmp_path / "out").iterdir()] == [f"file{n}"]
        assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left aside
