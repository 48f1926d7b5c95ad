"""Offload modes change where weights live, never what the pipeline computes: outputs equal the plain pipeline's
exactly, block offload keeps at most `resident` blocks' weights on the device, model offload runs one component at a
time in the order they are used, and `remove()` gives back the plain pipeline. On CPU the "device" is the CPU too, so
residency is checked through the weights each block holds while it and the others run."""

from dataclasses import replace

import pytest
import torch

from tests.tiny_pipeline import perturb, tiny_vidgen_pipeline
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.offload import enable_block_offload, enable_model_offload, entry_points

PROMPT = "a red circle"
TEXT, DIT, VAE = 0, 1, 2


def deep_pipeline(num_layers: int = 5):
    """The tiny pipeline with a DiT of more blocks than are resident, so prefetching has somewhere to go."""
    pipe = tiny_vidgen_pipeline()
    torch.manual_seed(1)
    pipe.dit = perturb(DiT(replace(DiTConfig.preset("tiny"), num_layers=num_layers))).eval()
    return pipe


def latents(pipe, **kw):
    return pipe(PROMPT, seed=0, progress=False, output_type="latent", **kw).frames


def no_hooks(module: torch.nn.Module) -> bool:
    return all(not m._forward_pre_hooks and not m._forward_hooks for m in module.modules())


def components(pipe):
    return [pipe.text_encoder.model, pipe.dit, pipe.vae]


# --- block offload ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resident", [1, 2])
def test_block_offload_equals_plain_dit(resident):
    pipe = deep_pipeline()
    plain = latents(pipe)  # guided: both branches in one forward
    plain_apart = latents(pipe, batch_guidance=False)  # one forward per branch
    offload = enable_block_offload(pipe.dit, "cpu", resident=resident)
    for _ in range(2):
        assert torch.equal(latents(pipe), plain)
    assert torch.equal(latents(pipe, batch_guidance=False), plain_apart)
    assert 1 <= offload.max_resident <= resident
    assert offload.resident == set(range(resident - 1))  # between calls: the first blocks of the next one
    offload.remove()
    offload.remove()  # a second remove does nothing
    assert no_hooks(pipe.dit)
    assert torch.equal(latents(pipe), plain)


def test_block_offload_holds_the_window_of_blocks():
    """While block i runs, it alone holds device copies of its weights, the next resident − 1 blocks (wrapping to
    block 0 for the next call) are fetched, and every other block holds its CPU copies."""
    pipe = deep_pipeline(num_layers=5)
    offload = enable_block_offload(pipe.dit, "cpu", resident=3)
    host = {id(p): p.data_ptr() for p in pipe.dit.blocks.parameters()}  # the CPU copies, swapped in while idle
    seen = []

    def watch(i, block, args):  # runs after the offload's own pre-hook
        seen.append(i)
        assert offload.resident == {i, (i + 1) % 5, (i + 2) % 5}
        for j, other in enumerate(pipe.dit.blocks):
            on_copies = all(p.data_ptr() == host[id(p)] for p in other.parameters())
            assert on_copies == (j != i), f"block {j} while block {i} runs"

    handles = [b.register_forward_pre_hook(lambda m, a, i=i: watch(i, m, a)) for i, b in enumerate(pipe.dit.blocks)]
    latents(pipe)
    for h in handles:
        h.remove()
    assert len(seen) >= 10 and seen == [0, 1, 2, 3, 4] * (len(seen) // 5)
    assert offload.max_resident == 3
    offload.remove()


def test_block_offload_with_step_cache_skips():
    """A step-cache skip stops the block loop after block 0: the blocks fetched ahead are dropped on the next call,
    so the bound holds and outputs still match."""
    pipe = deep_pipeline()
    plain = latents(pipe, step_cache=10.0)  # a threshold this high skips every step it may
    offload = enable_block_offload(pipe.dit, "cpu", resident=3)
    out = pipe(PROMPT, seed=0, progress=False, output_type="latent", step_cache=10.0)
    assert torch.equal(out.frames, plain)
    assert sum(c.skipped for c in out.step_caches) > 0
    assert offload.max_resident <= 3
    offload.remove()


def test_block_offload_keeps_non_block_weights_on_device():
    pipe = deep_pipeline()
    offload = enable_block_offload(pipe.dit, "cpu")
    blocks = {id(p) for p in pipe.dit.blocks.parameters()}
    assert all(p.device.type == "cpu" for p in pipe.dit.parameters() if id(p) not in blocks)
    assert pipe.device == torch.device("cpu")  # the DiT's first parameter is not in a block
    offload.remove()


def test_block_offload_refuses_training():
    pipe = deep_pipeline()
    with pytest.raises(ValueError, match="training mode"):
        enable_block_offload(pipe.dit.train(), "cpu")
    pipe.dit.eval()
    with pytest.raises(ValueError, match="resident"):
        enable_block_offload(pipe.dit, "cpu", resident=0)
    offload = enable_block_offload(pipe.dit, "cpu")
    x = torch.randn(1, 4, 1, 4, 4)
    with pytest.raises(RuntimeError, match="inference"):  # the tiny DiT's parameters require grad
        pipe.dit(x, torch.tensor([0.5]), torch.randn(1, 16, 24))
    pipe.dit.requires_grad_(False)
    pipe.dit(x, torch.tensor([0.5]), torch.randn(1, 16, 24))  # grad mode on, but no weight records gradients
    offload.remove()


# --- model offload ------------------------------------------------------------------------------------------------


def test_model_offload_equals_plain_pipeline():
    """Decoded frames too: the VAE's streaming decode keeps its temporal cache across the hooked steps."""
    pipe = tiny_vidgen_pipeline()
    plain = pipe(PROMPT, seed=0, progress=False, output_type="pt").frames
    offload = enable_model_offload(components(pipe), "cpu")
    for _ in range(2):
        assert torch.equal(pipe(PROMPT, seed=0, progress=False, output_type="pt").frames, plain)
    assert offload.activations == [TEXT, DIT, VAE] * 2
    assert offload.active == VAE
    offload.remove()
    assert offload.active is None
    assert all(no_hooks(m) for m in components(pipe))
    assert torch.equal(pipe(PROMPT, seed=0, progress=False, output_type="pt").frames, plain)


def test_model_offload_follows_the_order_of_use():
    """Frame-to-video encodes the image before sampling: text encoder, VAE, DiT, VAE, one at a time."""
    pipe = tiny_vidgen_pipeline()
    image = torch.rand(3, 32, 32)
    offload = enable_model_offload(components(pipe), "cpu")
    running = []

    def watch(i):
        def hook(module, args):  # runs after the offload's own pre-hook
            assert offload.active == i
            running.append(i)
        return hook

    handles = [e.register_forward_pre_hook(watch(i)) for i, m in enumerate(components(pipe)) for e in entry_points(m)]
    pipe(PROMPT, seed=0, progress=False, output_type="pt", image=image)
    for h in handles:
        h.remove()
    assert offload.activations == [TEXT, VAE, DIT, VAE]
    assert [i for k, i in enumerate(running) if k == 0 or running[k - 1] != i] == [TEXT, VAE, DIT, VAE]
    offload.release()
    assert offload.active is None
    offload.remove()


def test_model_offload_hooks_what_runs():
    pipe = tiny_vidgen_pipeline()
    vae = pipe.vae
    assert entry_points(pipe.dit) == [pipe.dit]
    assert entry_points(pipe.text_encoder.model) == [pipe.text_encoder.model]
    assert entry_points(vae) == [vae.encoder, vae.quant_conv, vae.post_quant_conv, vae.decoder]  # no forward


def test_model_offload_checks_its_arguments():
    pipe = tiny_vidgen_pipeline()
    with pytest.raises(TypeError, match=r"\.model"):
        enable_model_offload([pipe.text_encoder, pipe.dit], "cpu")
    with pytest.raises(ValueError, match="twice"):
        enable_model_offload([pipe.dit, pipe.dit], "cpu")
    with pytest.raises(ValueError, match="at least one"):
        enable_model_offload([], "cpu")
    with pytest.raises(ValueError, match="device name"):
        enable_model_offload([pipe.dit], "gpu0")
