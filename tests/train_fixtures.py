"""Small media files, configs and a tiny text encoder for the training tests (written by the tests themselves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ["a", "red", "green", "blue", "circle", "square", "moving", "left", "right", "on", "black", "background"]


def moving_square(frames: int, height: int, width: int, colour=(220, 50, 50), seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): a square sliding right over a dark background."""
    rng = np.random.default_rng(seed)
    out = np.full((frames, height, width, 3), 20, np.uint8)
    s = max(4, width // 4)
    y = int(rng.integers(0, height - s))
    for t in range(frames):
        x = (int(rng.integers(0, 3)) + 2 * t) % (width - s)
        out[t, y:y + s, x:x + s] = colour
    return out


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    import av

    codec = "gif" if path.suffix == ".gif" else ("libvpx-vp9" if path.suffix == ".webm" else "libx264")
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        if codec == "libx264":
            s.options = {"crf": "10"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_image(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path)
    return path


def media_folder(root: Path, videos: int = 3, images: int = 2, corrupt: bool = True, frames: int = 9,
                 size: tuple[int, int] = (32, 40)) -> Path:
    """videos NNN.mp4 + captions, images NNN.png, and one corrupt mp4 (garbage bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    colours = [(220, 50, 50), (50, 180, 70), (50, 90, 230)]
    for i in range(videos):
        write_video(root / f"clip{i}.mp4", moving_square(frames, *size, colour=colours[i % 3], seed=i))
        (root / f"clip{i}.txt").write_text(f"a {['red', 'green', 'blue'][i % 3]} square moving right\n")
    for i in range(images):
        write_image(root / f"img{i}.png", moving_square(1, *size, seed=10 + i)[0])
    if corrupt:
        (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return root


def tiny_text_encoder(folder: Path, dim: int = 24) -> Path:
    """A 1-layer T5 encoder with a word-level tokenizer over WORDS, saved in the standard transformers layout."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(vocab), d_model=dim, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5EncoderModel(cfg).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
