"""compile_blocks (vidgen/dit/compile.py): compiled == eager, one graph for all blocks, clear errors before any work.

aot_eager traces through dynamo and AOT autograd (fullgraph: no graph breaks) without inductor's C++ build on a CPU.
"""

import copy
import dataclasses

import pytest
import torch

from tests.tiny_pipeline import perturb
from vidgen.dit.compile import compile_blocks
from vidgen.dit.config import DiTConfig
from vidgen.dit.fp8 import quantize_fp8
from vidgen.dit.model import DiT

TINY = DiTConfig.preset("tiny")
SCALAR_T = torch.tensor([10.0, 700.0])
PER_FRAME_T = torch.tensor([[0.0, 500.0, 999.0], [30.0, 30.0, 600.0]])


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # graphs cached by other tests would hide (or cause) compilations here
    yield
    torch._dynamo.reset()


class CountingBackend:
    """A torch.compile backend that runs the traced graph as is and records each graph it is given."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def _dit(**changes):
    return perturb(DiT(dataclasses.replace(TINY, **changes))).eval()


def _inputs(b=2, f=3, h=4, w=6, seq=5):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, TINY.in_dim, f, h, w, generator=g), torch.randn(b, seq, TINY.text_dim, generator=g)


def test_compiled_blocks_match_eager_for_scalar_and_per_frame_t():
    eager = _dit()
    compiled = compile_blocks(copy.deepcopy(eager), backend="aot_eager")
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # compiled in place: same names
    x, ctx = _inputs()
    with torch.no_grad():
        for t in (SCALAR_T, PER_FRAME_T):
            torch.testing.assert_close(compiled(x, t, ctx), eager(x, t, ctx), rtol=1e-5, atol=1e-6)


def test_one_graph_serves_every_block():
    backend = CountingBackend()
    dit = compile_blocks(_dit(num_layers=3), backend=backend)
    x, ctx = _inputs()
    with torch.no_grad():
        dit(x, SCALAR_T, ctx)
        assert backend.graphs == 1  # three blocks, one graph
        dit(x, SCALAR_T + 1, ctx)
        assert backend.graphs == 1  # new values, same shapes: no recompilation
        dit(x, PER_FRAME_T, ctx)
        assert backend.graphs == 2  # per-frame modulation groups are another graph, again shared


def test_compiling_twice_is_harmless():
    backend = CountingBackend()
    eager = _dit()
    dit = compile_blocks(copy.deepcopy(eager), backend=backend)
    x, ctx = _inputs()
    with torch.no_grad():
        first = dit(x, SCALAR_T, ctx)
        compile_blocks(dit, backend=backend)
        torch.testing.assert_close(dit(x, SCALAR_T, ctx), first, rtol=0, atol=0)
        torch.testing.assert_close(first, eager(x, SCALAR_T, ctx), rtol=1e-5, atol=1e-6)
    assert backend.graphs == 1  # the second call reused the cached graph


def test_fp8_blocks_compile():
    # fp32 compute: on a CPU, a bf16 linear asks oneDNN whether the CPU has bf16 matmul units from inside the
    # block, which dynamo cannot trace under fullgraph (vidgen_kernels.ops.cpu_has_half_matmul).
    eager = quantize_fp8(_dit(), torch.float32)
    compiled = compile_blocks(copy.deepcopy(eager), backend="aot_eager")
    x, ctx = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, PER_FRAME_T, ctx), eager(x, PER_FRAME_T, ctx), rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_refused_before_any_work():
    dit = _dit()
    with pytest.raises(ValueError, match="unknown torch.compile backend 'inductr'.*'aot_eager'.*'inductor'"):
        compile_blocks(dit, backend="inductr")
    backend = CountingBackend()
    with pytest.raises(ValueError, match=r"unknown torch.compile option\(s\) \['fulgraph'\]"):
        compile_blocks(dit, backend=backend, fulgraph=True)
    x, ctx = _inputs()
    with torch.no_grad():
        dit(x, SCALAR_T, ctx)
    assert backend.graphs == 0  # the refused call compiled nothing
    with pytest.raises(ValueError, match="non-empty nn.ModuleList; Linear has no `blocks`"):
        compile_blocks(torch.nn.Linear(2, 2), backend="aot_eager")
