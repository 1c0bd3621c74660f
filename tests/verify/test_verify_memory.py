"""Memory estimates, chunked back-substitution and the memory limit."""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import BoundMemoryError, LpBall, bounds, estimate_memory

from ._helpers import tiny_input, tiny_model


def test_estimate_grows_with_length_and_method():
    m = tiny_model(31, layers=2, layernorm="standard", activation="gelu")
    est = {T: estimate_memory(m, T, [0], "crown") for T in (2, 4, 8)}
    assert est[2] < est[4] < est[8]
    assert estimate_memory(m, 8, [0], "ibp") < estimate_memory(m, 8, [0], "forward")
    assert estimate_memory(m, 8, LpBall(0.1, positions=[0, 1]), "forward") > estimate_memory(
        m, 8, LpBall(0.1, positions=[0]), "forward"
    )
    # chunking bounds the back-substitution term
    assert estimate_memory(m, 8, [0], "crown", chunk_size=1) < est[8]


@pytest.mark.parametrize("method", ["crown", "baf"])
def test_chunked_back_substitution_gives_identical_bounds(method):
    m = tiny_model(32, layers=2, layernorm="standard", activation="tanh")
    e = tiny_input(m, B=2, T=4, seed=32)
    spec = LpBall(0.05, p=2, positions=[1, 2])
    ref = bounds(m, e, spec, method)
    for chunk in (3, 7, 1000):
        got = bounds(m, e, spec, method, chunk_size=chunk)
        assert torch.allclose(got[0], ref[0], atol=1e-12)
        assert torch.allclose(got[1], ref[1], atol=1e-12)
    limit = estimate_memory(m, 4, spec, method, batch=2, chunk_size=3)
    got = bounds(m, e, spec, method, memory_limit=limit)
    assert torch.allclose(got[0], ref[0], atol=1e-12)


def test_memory_limit_too_small_raises_with_estimate():
    m = tiny_model(33)
    e = tiny_input(m, B=1, T=4)
    with pytest.raises(BoundMemoryError) as info:
        bounds(m, e, LpBall(0.1, positions=[0]), "crown", memory_limit=1000)
    assert isinstance(info.value, MemoryError) and info.value.estimate > 1000
    assert str(info.value.estimate) in str(info.value)
