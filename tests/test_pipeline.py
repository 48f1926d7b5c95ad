import numpy as np
import pytest
import torch

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen import flow
from vidgen.pipeline import VideoPipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_vidgen_pipeline()


def _noise(pipe, batch=1, frames=5, size=32, seed=3):
    shape = (batch, pipe.dit.config.in_dim, 1 + (frames - 1) // 4, size // 8, size // 8)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_output_types_and_image_is_one_frame(pipe):
    out = pipe("a red circle moves left", seed=1, progress=False)
    assert out.frames.shape == (1, 5, 32, 32, 3) and out.frames.dtype == np.float32 and out.seed == 1
    assert 0 <= out.frames.min() and out.frames.max() <= 1 and out.frames.std() > 0
    img = pipe("a red circle", num_frames=1, seed=1, progress=False, output_type="pil").frames
    assert len(img) == 1 and len(img[0]) == 1 and img[0][0].size == (32, 32)
    pt = pipe("a red circle", num_frames=1, seed=1, progress=False, output_type="pt").frames
    assert isinstance(pt, torch.Tensor) and pt.shape == (1, 1, 32, 32, 3)
    lat = pipe("a red circle", seed=1, progress=False, output_type="latent").frames
    assert lat.shape == (1, 4, 2, 4, 4)


def test_seed_reproducible_and_embeddings_reusable(pipe):
    a = pipe("a blue square", seed=7, progress=False).frames
    b = pipe("a blue square", seed=7, progress=False).frames
    c = pipe("a blue square", seed=8, progress=False).frames
    assert np.array_equal(a, b) and not np.allclose(a, c)
    embeds, neg = pipe.encode_prompt("a blue square"), pipe.encode_prompt("")
    d = pipe(prompt_embeds=embeds, negative_prompt_embeds=neg, seed=7, progress=False).frames
    assert np.allclose(a, d, atol=1e-6)


def test_multistep_euler_with_guidance_equals_design_formula(pipe):
    """x ← x + (σ_{i+1} − σ_i)·(v_u + g·(v_c − v_u)), σ_i = shift(linspace(1, 0, N+1)), v = DiT(x, 1000σ, text)."""
    steps, g, shift = 3, 4.0, 2.5
    x = _noise(pipe)
    out = pipe("a green triangle", negative_prompt="black background", latents=x.clone(), num_inference_steps=steps,
               guidance_scale=g, shift=shift, progress=False, output_type="latent").frames
    cond, uncond = pipe.text_encoder("a green triangle"), pipe.text_encoder("black background")
    sig = [shift * s / (1 + (shift - 1) * s) for s in torch.linspace(1, 0, steps + 1).tolist()]
    with torch.no_grad():
        for i in range(steps):
            t = torch.full((1,), 1000 * sig[i])
            v_c, v_u = pipe.dit(x, t, cond), pipe.dit(x, t, uncond)
            x = x + (sig[i + 1] - sig[i]) * (v_u + g * (v_c - v_u))
    assert torch.allclose(out, x, atol=1e-4)


def test_decode_is_vae_decode(pipe):
    x = _noise(pipe)
    chunks = list(pipe.decode_latents(x, progress=False))
    assert [c.shape[1] for c in chunks] == [1, 4]
    ref = ((pipe.vae.decode(x) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)
    assert torch.allclose(torch.cat(chunks, 1), ref, atol=1e-5)


def test_batched_guidance_equals_two_forwards_and_batches(pipe):
    x = _noise(pipe, batch=4)
    kw = dict(latents=x, num_videos_per_prompt=2, progress=False, output_type="latent", guidance_scale=3.0)
    a = pipe(["a red circle", "a blue square"], **kw).frames
    b = pipe(["a red circle", "a blue square"], batch_guidance=False, **kw).frames
    assert a.shape == (4, 4, 2, 4, 4) and torch.allclose(a, b, atol=1e-5)
    # each video of a batch equals the same prompt and noise alone
    alone = pipe("a blue square", latents=x[2:3], progress=False, output_type="latent", guidance_scale=3.0).frames
    assert torch.allclose(a[2:3], alone, atol=1e-5)


def test_guidance_at_most_one_runs_conditional_branch_only(pipe):
    calls = []
    real = pipe.text_encoder.__call__

    class Spy:
        def __getattr__(self, name):
            return getattr(pipe.text_encoder_real, name)

        def __call__(self, prompts):
            calls.append(prompts)
            return real(prompts)

    pipe.text_encoder_real, pipe.text_encoder = pipe.text_encoder, Spy()
    try:
        pipe("a red circle", guidance_scale=1.0, progress=False, output_type="latent", seed=0)
    finally:
        pipe.text_encoder = pipe.text_encoder_real
    assert calls == [["a red circle"]]  # no negative prompt encoded, no unconditional branch


def test_image_conditioning_holds_first_latent_frame_clean(pipe):
    image = np.random.default_rng(0).random((48, 40, 3)).astype(np.float32)  # resized/cropped to 32x32
    steps = []
    out = pipe("a red circle", image=image, height=32, width=32, seed=0, progress=False, output_type="latent",
               callback=steps.append).frames
    first = pipe.encode_image(image, 32, 32)
    assert torch.equal(out[:, :, :1], first) and len(steps) == 2
    # sizes default to the image's (rounded to multiples of 16)
    assert pipe("a red circle", image=image, seed=0, progress=False, output_type="latent").frames.shape[-2:] == (6, 4)


def test_video_continuation_holds_its_latent_frames_clean(pipe):
    video = np.random.default_rng(1).random((5, 32, 32, 3)).astype(np.float32)
    out = pipe("a red circle", video=video, num_frames=9, seed=0, progress=False, output_type="latent").frames
    assert out.shape[2] == 3
    given = pipe.vae.encode(torch.from_numpy(video).permute(3, 0, 1, 2)[None] * 2 - 1)
    assert torch.equal(out[:, :, :2], given)
    with pytest.raises(ValueError, match="leaves nothing to generate"):
        pipe("a red circle", video=video, num_frames=5, progress=False)
    with pytest.raises(ValueError, match="1 \\+ 4·j"):
        pipe("a red circle", video=video[:3], context_frames=3, num_frames=9, progress=False)
    with pytest.raises(ValueError, match="not both"):
        pipe("a red circle", video=video, image=video[0], num_frames=9, progress=False)


def test_progress_bars_off_when_asked(pipe, capsys):
    pipe("a red circle", seed=0, progress=False)
    assert capsys.readouterr().err == ""
    pipe("a red circle", seed=0, progress=True)
    err = capsys.readouterr().err
    assert "denoise" in err and "decode" in err


class _Explodes:
    """Stands in for a component: any use means heavy work started before the inputs were checked."""

    def __getattr__(self, name):
        raise AssertionError(f"touched .{name} before validating the inputs")

    def __call__(self, *args, **kwargs):
        raise AssertionError("ran before validating the inputs")


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_frames=10), "nearest valid counts are 9 or 13"),
    (dict(num_frames=0), "nearest valid counts are 1"),
    (dict(height=30), "height=30 is not a positive multiple of 16"),
    (dict(width=8), "width=8"),
    (dict(guidance_scale=-1.0), "guidance_scale must be >= 0"),
    (dict(num_inference_steps=0), "num_inference_steps must be >= 1"),
    (dict(sampler="heun"), "unknown sampler"),
    (dict(output_type="mp4"), "output_type"),
    (dict(shift=0.0), "shift must be > 0"),
    (dict(image=np.zeros((4, 4))), r"image array must be \(H, W, 3\)"),
    (dict(negative_prompt=["a", "b"]), "2 negative prompts for 1 prompts"),
])
def test_bad_input_fails_before_heavy_work(pipe, kwargs, message):
    saved = pipe.text_encoder
    pipe.text_encoder = _Explodes()
    try:
        with pytest.raises(ValueError, match=message):
            pipe("a red circle", progress=False, **kwargs)
    finally:
        pipe.text_encoder = saved


def test_bad_latents_and_prompt(pipe):
    with pytest.raises(ValueError, match="latents have shape"):
        pipe("a red circle", latents=torch.zeros(1, 4, 3, 4, 4), progress=False)
    with pytest.raises(TypeError, match="prompt must be"):
        pipe(123, progress=False)
    with pytest.raises(ValueError, match="prompt embeddings have shape"):
        pipe(prompt_embeds=torch.zeros(1, 16, 7), progress=False)


def test_save_and_load_round_trip(pipe, tmp_path):
    folder = pipe.save_pretrained(tmp_path / "model")
    with pytest.raises(FileExistsError, match="overwrite"):
        pipe.save_pretrained(folder)
    loaded = VideoPipeline.from_pretrained(folder, device="cpu")
    assert loaded.config == pipe.config
    x = _noise(pipe)
    kw = dict(latents=x, progress=False, output_type="latent")
    assert torch.allclose(loaded("a red circle", **kw).frames, pipe("a red circle", **kw).frames, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left


def test_not_a_model_folder_names_missing_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoPipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="neither vidgen_pipeline.json"):
        VideoPipeline.from_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="vae/config.json is missing"):
        VideoPipeline.from_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text('{"_class_name": "WanVACEPipeline"}')
    with pytest.raises(ValueError, match="supported are the Wan folders of WanPipeline and WanImageToVideoPipeline"):
        VideoPipeline.from_pretrained(tmp_path)
    monkeypatch.setattr("vidgen.model_folder.DEFAULT_MODEL_DIR", tmp_path / "assets" / "default")
    with pytest.raises(FileNotFoundError, match="embedded default model is not installed"):
        VideoPipeline.from_pretrained()


def test_sigma_schedule_is_the_flow_one(pipe):
    seen = []
    pipe("a red circle", seed=0, num_inference_steps=3, shift=2.0, progress=False, output_type="latent",
         callback=lambda info: seen.append(info.sigma))
    assert seen == pytest.approx(flow.sigma_schedule(3, 2.0)[:-1].tolist())


def test_bf16_components_run_and_stay_close_to_fp32():
    pipe = tiny_vidgen_pipeline()
    x = _noise(pipe)
    kw = dict(latents=x, progress=False, output_type="latent", num_inference_steps=2)
    ref = pipe("a red circle", **kw).frames
    pipe.to(dtype=torch.bfloat16)
    assert next(pipe.dit.parameters()).dtype == pipe.text_encoder.dtype == torch.bfloat16
    assert next(pipe.vae.parameters()).dtype == torch.float32  # the VAE keeps its own precision
    out = pipe("a red circle", **kw).frames
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
    frames = pipe("a red circle", num_frames=1, seed=0, progress=False).frames
    assert frames.dtype == np.float32 and np.isfinite(frames).all()
