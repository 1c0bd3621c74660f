"""How the CUDA path of lif_multistep asks for its kernels, checked without a GPU: each launch
names exactly the one instance it runs (so a first call compiles one template instance, not all
of a dtype's), the key is the same on every call, and the loader compiles a key once."""

from __future__ import annotations

import itertools
import types

import pytest
import torch

from toolkit import _kernels
from toolkit.snn import SURROGATES, _lif_cuda
from toolkit.snn.neuron import LIFParams

from ._pairwise import all_pairs


@pytest.fixture
def launches(monkeypatch):
    calls = []

    def fake_launch(function, n, sig, args, device):
        # The signature must describe every argument, pointers where tensors (or None) go.
        assert len(sig) == len(args)
        for kind, a in zip(sig, args, strict=True):
            assert (kind == "p") == (a is None or isinstance(a, torch.Tensor)), (kind, a)
        calls.append(("lif", function, (function,), args))

    monkeypatch.setattr(_lif_cuda, "_launch", fake_launch)
    return calls


def _run(dtype: torch.dtype, steps: int, n: int = 6) -> None:
    p = LIFParams.make()
    x = torch.zeros(steps, n, dtype=dtype)
    bits = torch.zeros((steps + 7) // 8, n, dtype=torch.uint8)
    _lif_cuda.lif_forward_kernel(x, None, 0.0, p, torch.empty_like(x), bits)
    g = torch.zeros_like(x)
    _lif_cuda.lif_backward_kernel(x, None, 0.0, p, bits, g, None, torch.empty_like(x))


@pytest.mark.parametrize(
    ("dtype", "ctype"),
    [(torch.float32, "float"), (torch.float64, "double"), (torch.float16, "tk_half")],
)
@pytest.mark.parametrize(("steps", "maxt"), [(1, 8), (8, 8), (9, 16), (32, 32), (33, 0)])
def test_each_launch_compiles_only_its_instance(launches, dtype, ctype, steps, maxt):
    _run(dtype, steps)
    _run(dtype, steps)
    assert [c[:3] for c in launches[:2]] == [c[:3] for c in launches[2:]]  # same keys again
    (_, fwd, fwd_key, _), (_, bwd, bwd_key, args) = launches[:2]
    assert fwd == f"lif_forward<{ctype}>" and fwd_key == (fwd,)
    # float and half register paths take the specialised instance: surrogate atan (id 0), and
    # the default options, hard reset + decay_input (1 + 4), no trace gradient, dL/dS loaded a
    # chunk ahead (16) at the register sizes of _AHEAD_MAXT
    if maxt and dtype != torch.float64:
        opts = 5 + 16 * (maxt in _lif_cuda._AHEAD_MAXT)
        assert bwd == f"lif_backward_fixed<{ctype}, {maxt}, 0, {opts}>" and bwd_key == (bwd,)
    else:
        assert bwd == f"lif_backward<{ctype}, {maxt}>" and bwd_key == (bwd,)
    scratch = args[7]
    if maxt == 0:  # the scratch variant gets a [T, n] buffer of the working type
        work = torch.float64 if dtype == torch.float64 else torch.float32
        assert isinstance(scratch, torch.Tensor)
        assert scratch.shape == (steps, 6) and scratch.dtype == work
    else:
        assert scratch is None  # a null pointer


def test_loader_compiles_each_key_once(monkeypatch):
    compiled = []

    class FakeModule:
        def __init__(self, code, options, name_expressions):
            self.name_expressions = name_expressions

        def compile(self):
            compiled.append(self.name_expressions)

    class FakeDevice:
        def __init__(self, index):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    fake = types.SimpleNamespace(
        RawModule=FakeModule,
        cuda=types.SimpleNamespace(
            Device=FakeDevice,
            compiler=types.SimpleNamespace(CompileException=RuntimeError),
        ),
    )
    monkeypatch.setattr(_kernels, "_require_cupy", lambda: fake)
    _kernels._compiled.cache_clear()
    try:
        a = ("lif_forward<float>",)
        b = ("lif_backward<float, 8>",)
        for _ in range(3):
            _kernels.load_module("lif", a, device=0)
            _kernels.load_module("lif", b, device=0)
        assert compiled == [a, b]
        _kernels.load_module("lif", list(a), device=0)  # a list names the same key
        assert len(compiled) == 2
    finally:
        _kernels._compiled.cache_clear()  # drop the fake modules


def test_gpu_cases_cover_every_pair():
    factors = ((0, 1, 2), (1, 5, 17, 32, 40), tuple(SURROGATES), (0.0, None), (0, 1), (0, 1))
    cases = all_pairs(factors)
    assert len(cases) < 30  # far below the 480 of the full product
    for i, j in itertools.combinations(range(len(factors)), 2):
        for u, v in itertools.product(factors[i], factors[j]):
            assert any(c[i] == u and c[j] == v for c in cases), (i, j, u, v)


# Which backward instance each call gets: the options written out by hand, bit by bit.
OPTION_CASES = list(
    itertools.product(SURROGATES, (0.0, None, -0.5), (False, True), (False, True), (False, True))
)


@pytest.mark.parametrize(("surrogate", "v_reset", "detach", "decay", "trace"), OPTION_CASES)
def test_backward_instance_fixes_every_option(surrogate, v_reset, detach, decay, trace):
    p = LIFParams.make(2.0, 1.0, v_reset, surrogate, None, detach, decay)
    kind = {"atan": 0, "sigmoid": 1, "rectangular": 2, "triangle": 3}[surrogate]
    opts = (v_reset is not None) + 2 * detach + 4 * decay + 8 * trace
    for dtype, ctype in ((torch.float32, "float"), (torch.float16, "tk_half")):
        for steps, maxt in ((1, 8), (8, 8), (9, 16), (16, 16), (17, 32), (32, 32)):
            for ahead in (False, True):
                # the chunk-ahead bit (16) only without a trace gradient
                want = opts + 16 * (ahead and not trace)
                name = _lif_cuda._backward_name(dtype, steps, p, trace, 1000, True, ahead)
                assert name == f"lif_backward_fixed<{ctype}, {maxt}, {kind}, {want}>"
            name = _lif_cuda._backward_name(dtype, steps, p, trace, 1000)
            want = opts + 16 * (maxt in _lif_cuda._AHEAD_MAXT and not trace)
            assert name == f"lif_backward_fixed<{ctype}, {maxt}, {kind}, {want}>"
            general = _lif_cuda._backward_name(dtype, steps, p, trace, 1000, False)
            assert general == f"lif_backward<{ctype}, {maxt}, {kind}>"
        # beyond the register sizes, and in float64, the general kernel reads everything
        assert _lif_cuda._backward_name(dtype, 33, p, trace, 1000) == f"lif_backward<{ctype}, 0>"
    assert _lif_cuda._backward_name(torch.float64, 5, p, trace, 10) == "lif_backward<double, 8>"


def test_backward_instance_distinguishes_option_sets():
    # 24 option sets, 24 distinct instances (the bits do not collide; ahead only without trace)
    names = set()
    for v_reset, detach, decay, trace, ahead in itertools.product(
        (0.0, None), (False, True), (False, True), (False, True), (False, True)
    ):
        p = LIFParams.make(2.0, 1.0, v_reset, "atan", None, detach, decay)
        names.add(_lif_cuda._backward_name(torch.float32, 32, p, trace, 64, True, ahead))
    assert len(names) == 24
    assert all(int(name[:-1].rsplit(", ", 1)[1]) < 24 for name in names)


def test_specialised_backward_needs_an_exact_grid():
    # more neurons than one grid of 256-thread blocks holds: the general, grid-stride kernel
    p = LIFParams.make()
    too_many = (2**31) * 256
    name = _lif_cuda._backward_name(torch.float32, 4, p, False, too_many)
    assert name == "lif_backward<float, 8, 0>"
    fits = (2**31 - 1) * 256
    assert _lif_cuda._backward_name(torch.float32, 4, p, False, fits).startswith("lif_backward_")


def test_backward_launch_asks_for_the_trace_instance(launches):
    p = LIFParams.make()
    x = torch.zeros(4, 6)
    bits = torch.zeros(1, 6, dtype=torch.uint8)
    g = torch.zeros_like(x)
    _lif_cuda.lif_backward_kernel(x, None, 0.0, p, bits, g, None, torch.empty_like(x))
    _lif_cuda.lif_backward_kernel(x, None, 0.0, p, bits, g, g, torch.empty_like(x))
    _lif_cuda.lif_backward_kernel(
        x, None, 0.0, p, bits, g, None, torch.empty_like(x), specialised=False
    )
    names = [c[1] for c in launches]
    ahead = 16 * (8 in _lif_cuda._AHEAD_MAXT)
    assert names == [
        f"lif_backward_fixed<float, 8, 0, {5 + ahead}>",
        "lif_backward_fixed<float, 8, 0, 13>",
        "lif_backward<float, 8, 0>",
    ]
    with pytest.raises(TypeError, match="specialised must be a bool"):
        _lif_cuda.lif_backward_kernel(
            x, None, 0.0, p, bits, g, None, torch.empty_like(x), specialised=1
        )
