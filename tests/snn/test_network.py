"""Encoders, builders and BPTT training on the digits."""

from __future__ import annotations

import pytest
import torch

from toolkit.snn import (
    DEFAULT_ACCURACY,
    LIFNeuron,
    direct_encode,
    rate_encode,
    spiking_cnn,
    spiking_mlp,
    train_default,
)


def test_rate_encoding_is_bernoulli():
    p = torch.linspace(0, 1, 11)
    s = rate_encode(p.expand(2000, 11), 10, torch.Generator().manual_seed(0))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    # 20000 draws per probability: standard error <= 0.0036.
    torch.testing.assert_close(s.mean((0, 1)), p, atol=0.015, rtol=0)
    assert float(s[:, :, 0].max()) == 0 and float(s[:, :, -1].min()) == 1


def test_direct_encoding_repeats():
    x = torch.rand(3, 4)
    d = direct_encode(x, 5)
    assert d.shape == (5, 3, 4) and all(torch.equal(d[t], x) for t in range(5))


def test_builders_shapes_and_layers():
    mlp = spiking_mlp((64, 20, 16, 10), steps=3, tau=3.0, surrogate="sigmoid")
    assert mlp(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    assert len(mlp.neurons()) == 2 and all(n.params.tau == 3.0 for n in mlp.neurons())
    rate_out = spiking_mlp((64, 10), steps=3, readout="spike_rate")
    assert isinstance(rate_out.body[-1], LIFNeuron)
    cnn = spiking_cnn((4, 6), steps=2, encoder="direct")
    assert cnn(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    kinds = [type(m).__name__ for m in cnn.synapses()]
    assert kinds.count("Conv2d") == 2 and kinds[-1] == "Linear" and len(cnn.neurons()) == 2


def test_builder_errors():
    with pytest.raises(ValueError, match="encoder must be one of"):
        spiking_mlp(encoder="poisson-ish")
    with pytest.raises(ValueError, match="sizes must hold at least"):
        spiking_mlp((64,))
    with pytest.raises(ValueError, match="too small"):
        spiking_cnn((4, 4, 4, 4), image_size=8)
    with pytest.raises(ValueError, match="tau must be >= 1"):
        spiking_mlp(tau=0.5)


def test_quick_training_reaches_stated_accuracy():
    _, result, _ = train_default(quick=True, progress=False)
    assert result.final_test_accuracy >= DEFAULT_ACCURACY["quick"]
    assert result.loss[-1] < result.loss[0]


@pytest.mark.slow
def test_full_training_reaches_stated_accuracy():
    _, result, _ = train_default(quick=False, progress=False)
    assert result.final_test_accuracy >= DEFAULT_ACCURACY["full"]
