import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.pixels import image_to_tensor


@pytest.fixture(scope="module")
def pipe():
    return tiny_vidgen_pipeline()


def _video(frames=7, size=16, seed=1):
    return np.random.default_rng(seed).random((frames, size, size, 3)).astype(np.float32)


def _vae_round_trip(pipe, pixels):
    """vae.decode(vae.encode(x)) as frames (T, H, W, 3) in [0, 1]."""
    return ((pipe.vae.decode(pipe.vae.encode(pixels)) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def test_first_frame_reproduces_image_up_to_vae_reconstruction(pipe):
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 20, 4), dtype=np.uint8), "RGBA")
    out = pipe("a red circle", image=rgba, num_frames=5, height=16, width=16, seed=0, progress=False,
               output_type="pt").frames
    assert out.shape == (1, 5, 16, 16, 3)
    ref = _vae_round_trip(pipe, image_to_tensor(rgba, 16, 16))  # RGBA converted, resized and center-cropped
    assert torch.allclose(out[0, 0], ref[0], atol=1e-5)
    assert not torch.allclose(out[0, 1], ref[0], atol=1e-2)  # later frames are generated, not copies


@pytest.mark.parametrize("image", [
    Image.fromarray(np.full((16, 16), 200, dtype=np.uint8), "L"),
    np.full((16, 16, 3), 200, dtype=np.uint8),
    np.full((16, 16, 3), 200 / 255, dtype=np.float64),
    torch.full((3, 16, 16), 200 / 255),
], ids=["pil-L", "uint8", "float", "tensor"])
def test_image_forms_agree(pipe, image):
    z = pipe.encode_image(image, 16, 16)
    ref = pipe.encode_image(np.full((16, 16, 3), 200, dtype=np.uint8), 16, 16)
    assert torch.allclose(z, ref, atol=1e-5)


@pytest.mark.parametrize("image, message", [
    (np.zeros((32, 32, 4), dtype=np.uint8), r"\(H, W, 3\)"),
    (np.zeros((32, 32), dtype=np.uint8), r"\(H, W, 3\)"),
    (torch.zeros(1, 32, 32), r"\(3, H, W\)"),
    (42, "PIL image"),
])
def test_bad_image_is_a_clear_error(pipe, image, message):
    with pytest.raises(ValueError, match=message):
        pipe("a red circle", image=image, height=32, width=32, progress=False)


def test_continuation_returns_new_frames_and_holds_context_exactly(pipe):
    video = _video(6)
    seen = []
    out = pipe("a red circle", video=video, context_frames=5, num_frames=9, seed=0, progress=False,
               output_type="latent", callback=seen.append).frames  # (1, C, 3, h, w)
    context = pipe.vae.encode(torch.from_numpy(video[-5:]).permute(3, 0, 1, 2)[None] * 2 - 1)  # (1, C, 2, h, w)
    assert out.shape == (1, 4, 3, 2, 2) and torch.equal(out[:, :, :2], context)
    assert all(torch.equal(step.x[:, :, :2], context) for step in seen)  # re-imposed after every step
    frames = pipe("a red circle", video=video, context_frames=5, num_frames=9, seed=0, progress=False).frames
    assert frames.shape == (1, 4, 16, 16, 3)  # 9 − 5 new frames only
    # the new frames are the decode of the whole window with the context frames dropped
    window = ((pipe.vae.decode(out) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    assert np.allclose(frames[0], window[5:].numpy(), atol=1e-5)


def test_continuation_video_forms_agree(pipe):
    video = _video(2)
    kw = dict(context_frames=1, num_frames=5, seed=0, progress=False, output_type="latent")
    ref = pipe("a red circle", video=video, **kw).frames
    as_list = [Image.fromarray((f * 255 + 0.5).astype(np.uint8)) for f in video]
    as_tensor = torch.from_numpy(video).permute(0, 3, 1, 2)  # (T, 3, H, W)
    assert torch.allclose(pipe("a red circle", video=as_tensor, **kw).frames, ref, atol=1e-5)
    assert torch.allclose(pipe("a red circle", video=torch.from_numpy(video), **kw).frames, ref, atol=1e-5)
    assert torch.allclose(pipe("a red circle", video=as_list, **kw).frames, ref, atol=0.05)  # uint8 rounding


def test_context_noise_is_told_to_the_dit_and_undone(pipe):
    video, sigma_c = _video(5), 0.1
    seen_t = []
    real = pipe.dit.forward

    def spy(x, t, context, *a, **k):
        seen_t.append(t.clone())
        return real(x, t, context, *a, **k)

    pipe.dit.forward = spy
    try:
        out = pipe("a red circle", video=video, context_frames=5, num_frames=9, seed=0, progress=False,
                   guidance_scale=1.0, output_type="latent", context_noise=sigma_c).frames
    finally:
        del pipe.dit.forward
    assert len(seen_t) == 2 and all(t.shape == (1, 3) for t in seen_t)
    assert all(torch.allclose(t[0, :2], torch.tensor(1000 * sigma_c, dtype=t.dtype)) for t in seen_t)  # the 2 context frames
    assert float(seen_t[0][0, 2]) == pytest.approx(1000.0)  # the generated frame starts at pure noise
    context = pipe.vae.encode(torch.from_numpy(video).permute(3, 0, 1, 2)[None] * 2 - 1)
    assert torch.equal(out[:, :, :2], context)  # returned clean


def test_context_latents_directly(pipe):
    z = torch.randn(1, 4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(num_frames=5, height=16, width=16, seed=0, progress=False)
    out = pipe("a red circle", context_latents=z, output_type="latent", **kw).frames
    assert out.shape == (1, 4, 2, 2, 2) and torch.equal(out[:, :, :1], z)
    assert pipe("a red circle", context_latents=z, **kw).frames.shape[1] == 4  # the context frame is dropped


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(video=_video(3), context_frames=5), ValueError, "has only 3 frame"),
    (dict(video=_video(7), context_frames=4), ValueError, r"not 1 \+ 4·j"),
    (dict(video=_video(7), context_frames=0), ValueError, r"not 1 \+ 4·j"),
    (dict(video=_video(9), context_frames=9, num_frames=9), ValueError, "leaves nothing to generate"),
    (dict(video=_video(7), context_frames=5.0), TypeError, "must be an int"),
    (dict(context_frames=5), ValueError, "needs video="),
    (dict(video=_video(5), image=_video(1)[0]), ValueError, "not both"),
    (dict(video=_video(5), context_noise=1.5), ValueError, "context_noise"),
    (dict(video=_video(5)[0]), ValueError, "leading time axis"),
    (dict(video=[]), ValueError, "no frames"),
    (dict(context_latents=torch.zeros(1, 4, 3, 2, 2)), ValueError, "leaves nothing"),
])
def test_bad_continuation_input(pipe, kwargs, error, message):
    kwargs = {"num_frames": 9, "height": 16, "width": 16, **kwargs}
    with pytest.raises(error, match=message):
        pipe("a red circle", progress=False, **kwargs)


def test_default_context_frames_fit_short_videos(pipe):
    out = pipe("a red circle", video=_video(3), num_frames=5, seed=0, progress=False, output_type="latent").frames
    assert out.shape == (1, 4, 2, 2, 2)  # a 3-frame video gives 1 context frame (the most valid count it holds)
    ref = pipe.vae.encode(torch.from_numpy(_video(3)[-1:]).permute(3, 0, 1, 2)[None] * 2 - 1)
    assert torch.equal(out[:, :, :1], ref)


def test_image_to_tensor_forms_agree(tmp_path):
    """A PIL image, a uint8 array, a float array and uint8/float tensors of the same pixels give one tensor."""
    import numpy as np
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    ref = image_to_tensor(rgb)
    assert ref.shape == (1, 3, 1, 8, 12) and ref.min() >= -1 and ref.max() <= 1
    Image.fromarray(rgb).save(tmp_path / "frame.png")
    forms = [tmp_path / "frame.png", str(tmp_path / "frame.png"), Image.fromarray(rgb), rgb.astype(np.float32) / 255, torch.from_numpy(rgb).permute(2, 0, 1),
             torch.from_numpy(rgb).permute(2, 0, 1).float() / 255]
    for form in forms:
        assert torch.allclose(image_to_tensor(form), ref, atol=1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        image_to_tensor(torch.full((3, 4, 4), float("nan")))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        image_to_tensor(tmp_path / "nope.png")
