from dataclasses import dataclass, field

import pytest

from vidgen import config_io


@dataclass(frozen=True)
class Inner:
    a: int = 1
    b: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    lr: float = 1e-3
    inner: Inner = field(default_factory=Inner)
    name: str | None = None


def test_round_trip(tmp_path):
    cfg = Outer(lr=2, inner=Inner(a=3, b=(4, 5, 6)), name="x")
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"c{suffix}"
        config_io.save(cfg, path)
        back = config_io.from_dict(Outer, path)
        assert back == cfg
        assert isinstance(back.lr, float) and isinstance(back.inner.b, tuple)


def test_unknown_keys_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.1\nlearning_rate: 0.2\ninner: {a: 1, zz: 2}\n")
    with pytest.raises(ValueError, match="learning_rate"):
        config_io.from_dict(Outer, path)
    with pytest.raises(ValueError, match="zz"):
        config_io.from_dict(Outer, {"inner": {"zz": 1}})


def test_missing_file_and_bad_top_level(tmp_path):
    with pytest.raises(FileNotFoundError):
        config_io.from_dict(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        config_io.from_dict(Outer, bad)
