"""Training data: folder and manifest sources, bucketing, the replayable bucket batch sampler, skipping bad files."""

import json
import logging

import pytest
import torch

from tests.train_fixtures import media_folder, moving_square, write_image, write_video
from vidgen.data.buckets import BucketBatchSampler, SampleKey, validate_buckets
from vidgen.data.dataset import MediaDataset, build_index, collate
from vidgen.data.media import MediaInfo, probe, read_frames
from vidgen.data.sources import MediaItem, read_manifest, scan_folder

BUCKETS = validate_buckets([(5, 32, 32), (1, 32, 32)])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return media_folder(tmp_path_factory.mktemp("media"))


def test_folder_index_skips_corrupt_file_with_one_warning(folder, caplog):
    items = scan_folder(folder)
    assert [i.path.name for i in items] == ["broken.mp4", "clip0.mp4", "clip1.mp4", "clip2.mp4", "img0.png", "img1.png"]
    assert items[1].caption == "a red square moving right" and items[4].caption == ""
    with caplog.at_level(logging.WARNING):
        index = build_index(items, BUCKETS)
    assert list(index.skipped) == index.unreadable == [str(folder / "broken.mp4")]
    assert sum("broken.mp4" in r.message for r in caplog.records) == 1
    # videos fill the 5-frame bucket, images the 1-frame one
    assert index.entries == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1)]


def test_sampler_batches_come_from_one_bucket_and_replay_from_any_position(folder):
    index = build_index(scan_folder(folder), BUCKETS)
    sampler = BucketBatchSampler(index.entries, BUCKETS, 2, image_ratio=0.3, seed=1)
    stream = sampler.batches()
    first = [next(stream) for _ in range(40)]
    assert all(len({k.bucket for k in b}) == 1 and len(b) == 2 for b in first)
    n_image = sum(BUCKETS[b[0].bucket].is_image for b in first)
    assert 3 <= n_image <= 25  # both kinds appear, mixed by the ratio
    resumed = sampler.batches(start=17)
    assert [next(resumed) for _ in range(23)] == first[17:]
    # two ranks split the global stream without overlap
    r0 = BucketBatchSampler(index.entries, BUCKETS, 2, image_ratio=0.3, seed=1, rank=0, world_size=2).batches()
    r1 = BucketBatchSampler(index.entries, BUCKETS, 2, image_ratio=0.3, seed=1, rank=1, world_size=2).batches()
    assert [next(r0) for _ in range(5)] == first[0:10:2] and [next(r1) for _ in range(5)] == first[1:10:2]


def test_dataset_makes_bucket_shaped_clips_in_range(folder):
    index = build_index(scan_folder(folder), BUCKETS)
    ds = MediaDataset(index, BUCKETS, random_crop=True, seed=0)
    batch = collate([ds[SampleKey(0, 0, 5)], ds[SampleKey(2, 0, 6)]])
    assert batch["video"].shape == (2, 3, 5, 32, 32)
    assert batch["video"].min() >= -1 and batch["video"].max() <= 1
    assert batch["caption"] == ["a red square moving right", "a blue square moving right"]
    image = ds[SampleKey(3, 1, 0)]["video"]
    assert image.shape == (3, 1, 32, 32)
    # the same key gives the same clip (crops and clip starts are seeded by the key)
    assert torch.equal(ds[SampleKey(1, 0, 9)]["video"], ds[SampleKey(1, 0, 9)]["video"])


def test_target_fps_strides_source_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", moving_square(17, 32, 32), fps=16)
    index = build_index([MediaItem(path, "x")], validate_buckets([(9, 32, 32), (5, 32, 32)]), fps=8)
    assert index.entries == [(0, 0)]  # 17 frames at 16 fps give 9 frames at 8 fps
    index = build_index([MediaItem(path, "x")], validate_buckets([(17, 32, 32), (5, 32, 32)]), fps=8)
    assert index.entries == [(0, 1)]  # too short for 17 frames at 8 fps


def test_manifests_csv_and_jsonl(folder, tmp_path):
    (tmp_path / "m.csv").write_text(f"path,caption\n{folder / 'clip0.mp4'},hello\n{folder / 'img0.png'},an image\n")
    rows = read_manifest(tmp_path / "m.csv")
    assert [(r.path.name, r.caption) for r in rows] == [("clip0.mp4", "hello"), ("img0.png", "an image")]
    lines = [{"path": str(folder / "clip1.mp4"), "caption": "c", "fps": 8, "frames": 9, "height": 32, "width": 40}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (row,) = read_manifest(tmp_path / "m.jsonl")
    assert row.info == MediaInfo(9, 8.0, 32, 40)
    (tmp_path / "bad.csv").write_text("file,caption\nx.mp4,y\n")
    with pytest.raises(ValueError, match="no 'path'"):
        read_manifest(tmp_path / "bad.csv")


def test_file_that_fails_late_is_replaced_and_reported(folder, tmp_path):
    # the manifest claims a readable video, so it is not probed; decoding fails when the batch is made
    broken = tmp_path / "late.mp4"
    broken.write_bytes(b"not a video")
    items = [MediaItem(broken, "bad", MediaInfo(9, 8.0, 32, 40)), MediaItem(folder / "clip0.mp4", "good")]
    index = build_index(items, BUCKETS)
    sample = MediaDataset(index, BUCKETS)[SampleKey(0, 0, 0)]
    assert sample["caption"] == "good" and sample["bad_files"] == [str(broken)]


def test_formats_gif_webm_jpg_and_readers(tmp_path):
    clip = moving_square(9, 32, 48)
    for name in ("a.gif", "a.webm"):
        info = probe(write_video(tmp_path / name, clip))
        assert (info.num_frames, info.height, info.width) == (9, 32, 48)
        assert read_frames(tmp_path / name, [0, 8]).shape == (2, 32, 48, 3)
    info = probe(write_image(tmp_path / "a.jpg", clip[0]))
    assert info == MediaInfo(1, 0.0, 32, 48)


def test_no_usable_files_and_bad_buckets_are_clear_errors(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    (tmp_path / "notes.md").write_text("not media")
    with pytest.raises(ValueError, match="no usable media files"):
        build_index(scan_folder(tmp_path), BUCKETS)
    with pytest.raises(ValueError, match=r"frames must be 1 \+ 4k"):
        validate_buckets([(8, 32, 32)])
    with pytest.raises(ValueError, match="multiples of 16"):
        validate_buckets([(5, 40, 32)])
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "missing")


def test_pyav_fallback_reads_what_decord_reads(folder, monkeypatch):
    from vidgen.data import media

    path = folder / "clip1.mp4"
    info, frames = probe(path), read_frames(path, [0, 4, 8])

    def broken(*args):
        raise RuntimeError("decord cannot open this file")

    monkeypatch.setattr(media, "_probe_decord", broken)
    monkeypatch.setattr(media, "_read_decord", broken)
    assert probe(path) == MediaInfo(info.num_frames, info.fps, info.height, info.width)
    assert (read_frames(path, [0, 4, 8]).astype(int) - frames.astype(int)).__abs__().max() <= 2


def test_shapes_world_is_a_source_without_files(tmp_path):
    from vidgen.train.config import TrainConfig
    from vidgen.train.data import build_data

    cfg = TrainConfig.load({"output_dir": str(tmp_path), "data": {"shapes": 12, "buckets": [[9, 32, 32], [1, 32, 32]],
                                                                  "image_ratio": 0.3, "batch_size": 2}})
    data = build_data(cfg, (4, 16))
    batches = data.sampler.batches()
    kinds = set()
    for _ in range(12):
        batch = data.collate([data.dataset[k] for k in next(batches)])
        kinds.add(batch["video"].shape[1:])
        assert all(c.startswith("a ") and " moving " in c for c in batch["caption"])
    assert kinds == {(3, 9, 32, 32), (3, 1, 32, 32)}


def test_shapes_partial_captions_reach_the_source_and_need_the_shapes_world(tmp_path):
    from vidgen.shapes.world import all_captions
    from vidgen.train.config import TrainConfig
    from vidgen.train.data import build_data

    data = {"shapes": 8, "buckets": [[9, 32, 32]], "batch_size": 2, "partial_captions": 1.0}
    cfg = TrainConfig.load({"output_dir": str(tmp_path), "data": data})
    source = build_data(cfg, (4, 16)).dataset
    captions = [source.world[i]["caption"] for i in range(8)]
    assert not set(captions) & set(all_captions())  # every caption leaves an attribute out
    for bad in ({**data, "partial_captions": 1.5}, {"folder": str(tmp_path), "partial_captions": 0.5}):
        with pytest.raises(ValueError, match="partial_captions"):
            TrainConfig.load({"output_dir": str(tmp_path), "data": bad})


@pytest.mark.slow
def test_shapes_split_reaches_the_source_and_needs_the_shapes_world(tmp_path):
    from vidgen.shapes.world import all_captions
    from vidgen.train.config import TrainConfig
    from vidgen.train.data import build_data

    data = {"shapes": 400, "buckets": [[5, 32, 32]], "batch_size": 2}
    captions = {}
    for split in ("train", "all"):
        cfg = TrainConfig.load({"output_dir": str(tmp_path), "data": {**data, "shapes_split": split}})
        world = build_data(cfg, (4, 16)).dataset.world
        captions[split] = {world.spec(i).text for i in range(len(world))}
    heldout = set(all_captions("heldout"))
    assert not captions["train"] & heldout  # the default: held-out captions never appear
    assert len(captions["all"] & heldout) > 5  # the whole world: ~1 in 10 items is a held-out combination
    for bad in ({**data, "shapes_split": "test"}, {"folder": str(tmp_path), "shapes_split": "all"}):
        with pytest.raises(ValueError, match="shapes_split"):
            TrainConfig.load({"output_dir": str(tmp_path), "data": bad})
