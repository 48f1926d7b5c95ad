import pytest

from vidgen.files import atomic_folder, replace_folder, write_atomic


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


def test_atomic_folder_appears_only_when_complete(tmp_path):
    target = tmp_path / "sub" / "out"
    with atomic_folder(target) as tmp:
        (tmp / "a").write_text("1")
        assert not target.exists()
    assert [p.name for p in target.iterdir()] == ["a"]
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_folder(target) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["a"]  # the old folder stays whole
    assert [p.name for p in target.parent.iterdir()] == ["out"]  # and nothing is left beside it
