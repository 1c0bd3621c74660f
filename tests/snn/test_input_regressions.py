"""Regression tests for the bad inputs that ``toolkit.snn`` accepted silently, answered with
an obscure error, or hung on before issue 10's sweep (one test per defect found)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

import toolkit.snn as snn

IMG = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 0, 1, 1])


def _net() -> snn.SpikingNet:
    return snn.spiking_mlp((16, 6, 2), steps=2, surrogate="triangle")


def test_surrogate_grad_takes_floating_tensors_only():
    with pytest.raises(TypeError, match="u must be a torch.Tensor"):
        snn.surrogate_grad(0.5)  # returned a plain float
    with pytest.raises(TypeError, match="u must have dtype"):
        snn.surrogate_grad(torch.tensor([0, 1]))  # returned float32 for int64 input


def test_rectangular_surrogate_keeps_nan():
    # the others gave NaN for NaN; the box gave 0, a value that looks valid
    out = snn.surrogate_grad(torch.tensor([math.nan, 0.1, math.inf]), "rectangular")
    assert math.isnan(out[0]) and out[1] == 1.0 and out[2] == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_lif_refuses_non_finite_currents(bad):
    x = torch.full((3, 2), 1.5)
    x[1, 0] = bad  # fired no spikes and returned zeros silently
    with pytest.raises(ValueError, match="x_seq must be finite"):
        snn.lif_multistep(x)
    with pytest.raises(ValueError, match="v_init must be finite"):
        snn.lif_multistep(torch.ones(3, 2), v_init=torch.tensor([0.0, math.nan]))


def test_infinite_tau_needs_undecayed_input():
    # tau=inf with decay_input=True multiplied the input by 0: a neuron that never fires
    with pytest.raises(ValueError, match="tau=inf"):
        snn.lif_multistep(torch.full((4, 1), 0.6), tau=math.inf)
    with pytest.raises(ValueError, match="tau=inf"):
        snn.LIFNeuron(tau=math.inf)
    # the IF neuron is the documented use: H = V + X
    assert snn.IFNeuron()(torch.full((4, 1), 0.5)).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


def test_rate_encode_checks_its_input_and_generator():
    with pytest.raises(TypeError, match="x must have dtype"):
        snn.rate_encode(torch.ones(3, dtype=torch.int64), 2)  # int spikes before
    with pytest.raises(ValueError, match="x must be finite"):
        snn.rate_encode(torch.tensor([math.nan]), 2)  # torch's "p_in" RuntimeError before
    with pytest.raises(TypeError, match="generator"):
        snn.rate_encode(torch.ones(3), 2, "g")


def test_sizes_and_steps_fit_int64():
    with pytest.raises(ValueError, match="steps"):
        snn.spiking_mlp((4, 2), steps=2**70)  # built a network that could never run
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        snn.spiking_mlp((4, 2**70))
    with pytest.raises(TypeError, match="sizes must be a sequence"):
        snn.spiking_mlp(None)
    with pytest.raises(TypeError, match="channels must be a sequence"):
        snn.spiking_cnn(4)


def test_spiking_net_checks_body_and_input_shape():
    with pytest.raises(TypeError, match="body"):
        snn.SpikingNet(None)  # accepted; failed at the first forward
    with pytest.raises(ValueError, match="x must hold 16 entries"):
        _net()(torch.rand(5, 1, 3, 3))  # "mat1 and mat2 shapes cannot be multiplied"
    cnn = snn.spiking_cnn((2,), image_size=4, steps=1)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 1, 4, 4\]"):
        cnn(torch.rand(2, 1, 6, 6))
    assert cnn(torch.rand(2, 1, 4, 4)).shape == (2, 10)


def test_evaluate_checks_its_data():
    net = _net()
    with pytest.raises(ValueError, match="x must not be empty"):
        snn.evaluate(net, IMG[:0], Y[:0])  # returned an accuracy of 0.0
    with pytest.raises(TypeError, match="y must have dtype"):
        snn.evaluate(net, IMG, Y.float())  # compared floats: a plausible accuracy
    with pytest.raises(ValueError, match="y must have 1 dimensions"):
        snn.evaluate(net, IMG, Y.unsqueeze(1))  # returned an "accuracy" of 2.0
    with pytest.raises(ValueError, match="batch_size"):
        snn.evaluate(net, IMG, Y, batch_size=0)  # "range() arg 3 must not be zero"
    correct = (net(IMG).argmax(1) == Y).float().mean().item()
    assert snn.evaluate(net, IMG, Y, batch_size=2) == pytest.approx(correct)


def test_train_bptt_checks_its_data_and_flags():
    net = _net()

    def train(*args, **kw):
        return snn.train_bptt(net, *args, epochs=1, progress=False, **kw)

    with pytest.raises(ValueError, match="x_train must not be empty"):
        train(IMG[:0], Y[:0])  # ZeroDivisionError
    with pytest.raises(ValueError, match="y_train must hold one label per row"):
        train(IMG[:3], Y)  # silently trained on the first 3
    with pytest.raises(ValueError, match=r"y_train must lie in \[0, 2\)"):
        train(IMG, Y + 5)  # IndexError: Target 6 is out of bounds
    with pytest.raises(ValueError, match="x_test and y_test come together"):
        train(IMG, Y, IMG, None)  # silently skipped the test accuracy
    with pytest.raises(TypeError, match="progress"):
        snn.train_bptt(net, IMG, Y, epochs=1, progress="no")  # truthy: showed a bar
    with pytest.raises(TypeError, match="callback"):
        train(IMG, Y, callback="cb")  # failed after the first epoch


def test_train_default_checks_flags_and_device():
    with pytest.raises(TypeError, match="quick"):
        snn.train_default(quick=1, progress=False)  # ran the quick training
    with pytest.raises(ValueError, match="device"):
        snn.train_default(True, progress=False, device="gpu")  # torch's RuntimeError


def test_sparsity_profile_checks_the_batch():
    with pytest.raises(TypeError, match="batch must be a pair"):
        snn.sparsity_profile(_net(), IMG)
    with pytest.raises(TypeError, match=r"batch\[1\]"):
        snn.sparsity_profile(_net(), (IMG, Y.float()))  # torch's target-dtype error


@pytest.mark.parametrize(
    "table, match",
    [
        ({"mac_pj": math.nan}, "table"),  # NaN energies
        ({"mac_pj": -1.0}, "table"),  # negative energies
        ({"bytes_per_s": 0.0}, "table"),  # infinite times
        ({"baseline_utilization": 2.0}, "table"),  # 200 % of peak
        ({"mac_pj": "a"}, "table"),  # "could not convert string to float"
        ({"mac_pj": True}, "table"),  # bool as 1.0
        ([("mac_pj", 1.0)], "table must be a dict"),  # AttributeError
        ({"baseline_macs_per_s": 5e-324}, "overflow"),  # infinite times, a NaN speed-up
    ],
)
def test_cost_table_is_checked(table, match):
    prof = snn.sparsity_profile(_net(), (IMG, Y))
    with pytest.raises((TypeError, ValueError), match=match):
        snn.h2learn_cost(prof, table=table)


def test_lut_counts_is_a_closed_form_for_huge_sizes():
    start = time.perf_counter()
    c = snn.lut_counts(10**15 + 3, 2, group=4, density=0.5)  # hung building 2.5e14 groups
    assert time.perf_counter() - start < 1.0
    assert c.lut_build_adds == 2 * (250_000_000_000_000 * 11 + (2**3 - 3 - 1))
    expected = 250_000_000_000_000 * (1 - 0.5**4) + (1 - 0.5**3)
    assert c.lut_lookup_adds == pytest.approx(2 * expected, rel=1e-12)


def test_lut_functions_check_weight_and_flag():
    w = torch.randn(3, 5)
    s = (torch.rand(4, 5) > 0.5).float()
    with pytest.raises(ValueError, match="weight must not be empty"):
        snn.lut_table(torch.zeros(0, 5))  # an empty table
    with pytest.raises(ValueError, match="weight must be on cpu"):
        snn.lut_accumulate(s, w.to("meta"))  # a meta "result"
    with pytest.raises(TypeError, match="return_counts"):
        snn.lut_accumulate(s, w, return_counts="no")  # truthy: returned a tuple
    out = snn.lut_accumulate(s, w.double(), group=2)
    assert np.allclose(out.numpy(), (s.double() @ w.double().T).numpy())
