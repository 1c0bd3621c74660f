"""sparsity_profile against a hand-written forward/backward; h2learn_cost against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toolkit.snn import (
    LayerInfo,
    SparsityProfile,
    h2learn_cost,
    lif_multistep,
    sparsity_profile,
    spiking_mlp,
)


def test_profile_matches_manual_bptt():
    net = spiking_mlp((64, 48, 10), steps=5, encoder="direct", surrogate="triangle", seed=3)
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(32, 1, 8, 8, generator=g) * 2, torch.randint(0, 10, (32,), generator=g)
    prof = sparsity_profile(net, (x, y), threshold=0.01)

    fc1, fc2 = net.synapses()[1], net.synapses()[2]
    x_seq = x.flatten(1).expand(5, 32, 64)
    x1 = fc1(x_seq)
    s1 = lif_multistep(x1, surrogate="triangle")
    out = fc2(s1)
    loss = F.cross_entropy(out.mean(0), y)
    gx1, gs1, gout, gw1 = torch.autograd.grad(loss, [x1, s1, out, fc1.weight])

    def fractions(t, thr):
        a = t.abs().flatten(1)
        return (a == 0).double().mean(1).numpy(), (
            a <= thr * a.amax(1, keepdim=True)
        ).double().mean(1).numpy()

    assert prof.names == ["fc1", "fc2"]
    np.testing.assert_allclose(prof.spike_density[0], s1.detach().flatten(1).mean(1).numpy())
    np.testing.assert_allclose(prof.input_density[1], (s1 != 0).flatten(1).double().mean(1).numpy())
    z, sm = fractions(gx1, 0.01)
    np.testing.assert_allclose(prof.grad_out_zero[0], z)
    np.testing.assert_allclose(prof.grad_out_small[0], sm)
    assert 0 < z.mean() < 1, "a triangle surrogate gives some exact zeros"
    np.testing.assert_allclose(prof.grad_in_zero[0], fractions(gs1, 0.01)[0])
    np.testing.assert_allclose(prof.grad_out_zero[1], fractions(gout, 0.01)[0])
    assert prof.weight_grad_zero[0] == pytest.approx(float((gw1 == 0).double().mean()))
    assert np.isnan(prof.spike_density[1]).all()
    assert fc1.weight.grad is None  # the model's gradients are left alone


def _synthetic(rho, z, steps=4, layers=2, batch=8):
    info = [
        LayerInfo(f"fc{i}", "linear", 64 * 32, 64, 32, 64 * 32, 64, True) for i in range(layers)
    ]
    full = lambda v: np.full((layers, steps), v)  # noqa: E731
    return SparsityProfile(
        layers=info,
        steps=steps,
        batch=batch,
        threshold=0.0,
        input_density=full(rho),
        spike_density=full(rho),
        grad_in_zero=full(z),
        grad_in_small=full(z),
        grad_out_zero=full(z),
        grad_out_small=full(z),
        weight_grad_zero=np.zeros(layers),
        weight_grad_small=np.zeros(layers),
    )


def test_cost_closed_forms():
    rho, z, g, steps, batch = 0.2, 0.6, 4, 4, 8
    c = h2learn_cost(_synthetic(rho, z), group=g)
    m = 64 * 32
    build = m / g * (2**g - g - 1)
    assert c.baseline_ops[0, 0] == m * steps
    assert c.accel_ops[0, 0] == pytest.approx(steps * m / g * (1 - (1 - rho) ** g) + build / batch)
    assert c.baseline_ops[0, 1] == 0  # no backward below the first layer
    assert c.accel_ops[1, 1] == pytest.approx(steps * m * (1 - z) ** 2)
    assert c.accel_ops[1, 2] == pytest.approx(
        steps * m / g * (1 - (1 - rho) ** g) * (1 - z**g) + build * steps / batch
    )


def test_no_sparsity_and_group_one_gives_no_op_saving():
    c = h2learn_cost(_synthetic(1.0, 0.0), group=1)
    np.testing.assert_allclose(c.op_reduction, 1.0)


def test_more_sparsity_more_savings():
    dense, sparse = h2learn_cost(_synthetic(0.5, 0.1)), h2learn_cost(_synthetic(0.1, 0.8))
    assert sparse.speedup > dense.speedup and sparse.energy_saving > dense.energy_saving
    serial = h2learn_cost(_synthetic(0.1, 0.8), pipelined=False)
    assert sparse.speedup > serial.speedup


def test_table_override_and_errors():
    prof = _synthetic(0.2, 0.5)
    cheap = h2learn_cost(prof, table={"dram_byte_pj": 1.0})
    assert cheap.table["dram_byte_pj"] == 1.0
    assert cheap.baseline_energy.sum() < h2learn_cost(prof).baseline_energy.sum()
    with pytest.raises(ValueError, match="table has no entry"):
        h2learn_cost(prof, table={"warp_pj": 1.0})
    with pytest.raises(ValueError, match="group must satisfy"):
        h2learn_cost(prof, group=9)
    with pytest.raises(TypeError, match="profile must be a SparsityProfile"):
        h2learn_cost({})
    with pytest.raises(ValueError, match="sparsity must be one of"):
        h2learn_cost(prof, sparsity="some")
