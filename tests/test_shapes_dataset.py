import json

import numpy as np
import pytest
import torch

from vidgen.metrics import psnr
from vidgen.shapes.dataset import ShapesDataset, read_manifest, write_dataset
from vidgen.shapes.world import PARTIAL_TEMPLATES, ClipSpec, all_captions, partial_caption, render_clip
from vidgen.video_io import read_video


def test_items_are_seeded_in_range_and_match_the_renderer():
    data = ShapesDataset(20, seed=3, image_ratio=0.5)
    again = ShapesDataset(20, seed=3, image_ratio=0.5)
    lengths = set()
    for i in range(len(data)):
        item = data[i]
        video = item["video"]
        assert torch.equal(video, again[i]["video"]) and item["caption"] == again[i]["caption"]
        assert video.dtype == torch.float32 and video.shape[0] == 3 and video.shape[2:] == (64, 64)
        assert video.min() >= -1 and video.max() <= 1
        t = video.shape[1]
        lengths.add(t)
        assert (t == 1) == data.is_image(i)
        spec = data.spec(i)
        assert item["caption"] == spec.text and spec.text in set(all_captions("train"))
        expected = torch.from_numpy(render_clip(spec, t)).permute(3, 0, 1, 2).float() / 127.5 - 1
        assert torch.equal(video, expected)
    assert lengths == {1, 17}
    other = ShapesDataset(20, seed=4)
    assert any(other[i]["caption"] != data[i]["caption"] for i in range(20))


@pytest.mark.slow
def test_partial_captions_leave_one_attribute_out_and_keep_the_clip():
    full = ShapesDataset(400, seed=5, image_ratio=0.2)
    part = ShapesDataset(400, seed=5, image_ratio=0.2, partial_captions=0.4)
    again = ShapesDataset(400, seed=5, image_ratio=0.2, partial_captions=0.4)
    left_out = []
    for i in range(len(full)):
        assert torch.equal(part[i]["video"], full[i]["video"])  # the clips do not depend on the captions
        spec, caption = full.spec(i), part[i]["caption"]
        assert caption == again[i]["caption"]  # seeded
        if caption != spec.text:
            forms = [a for a in PARTIAL_TEMPLATES if partial_caption(spec.caption, a) == caption]
            assert len(forms) == 1, (caption, spec.text)
            left_out.append(forms[0])
    assert 0.3 < len(left_out) / len(full) < 0.5  # 0.4 of the items
    assert set(left_out) == set(PARTIAL_TEMPLATES)  # every attribute is left out sometimes
    assert all(ShapesDataset(50, seed=5, partial_captions=1.0)[i]["caption"] not in all_captions() for i in range(50))


def test_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        ShapesDataset(4, frames=16)
    with pytest.raises(ValueError, match="image_ratio"):
        ShapesDataset(4, image_ratio=1.5)
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(4, split="val")
    with pytest.raises(ValueError, match="partial_captions"):
        ShapesDataset(4, partial_captions=-0.1)
    with pytest.raises(IndexError):
        ShapesDataset(4)[4]


def test_write_dataset_round_trips_and_never_clobbers(tmp_path):
    folder = write_dataset(tmp_path / "shapes", 4, seed=1, frames=9, image_ratio=0.25)
    records = read_manifest(folder)
    assert [r["caption"] for r in records] == [ShapesDataset(4, 1, frames=9, image_ratio=0.25)[i]["caption"]
                                             for i in range(4)]
    for r in records:
        frames = read_video(r["path"])[0]
        assert len(frames) == r["frames"] and r["fps"] == 8
        assert np.array_equal(frames, render_clip(ClipSpec(**r["spec"]), r["frames"]))  # lossless by default
        assert open(r["path"][:-4] + ".txt").read().strip() == r["caption"]
        assert r["caption"] == ClipSpec(**r["spec"]).text  # full captions only: partial ones are a training option
    with pytest.raises(TypeError, match="partial_captions"):
        write_dataset(tmp_path / "partial", 2, partial_captions=0.5)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dataset(folder, 2, seed=2)
    assert len(read_manifest(folder)) == 4
    write_dataset(folder, 2, seed=2, overwrite=True)
    assert len(read_manifest(folder)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes"]  # no temporary folders left behind


def test_playable_yuv420_files_decode_close_to_the_originals(tmp_path):
    folder = write_dataset(tmp_path / "yuv", 2, seed=0, lossless=False)
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        frames = read_video(folder / r["path"])[0]
        assert psnr(frames, render_clip(ClipSpec(**r["spec"]), r["frames"])) > 33.0
