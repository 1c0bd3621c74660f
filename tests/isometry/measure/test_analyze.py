"""analyze(): per-block measurement vs prediction, checked against independent references."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import ndtr
from torch import nn

from toolkit.isometry import AnalysisTable, NetworkDesign, analyze, build_network, predict_block

D = torch.float64


def gauss_mean(fn, var: float) -> float:
    nodes, weights = hermegauss(120)
    return float(np.sum(weights * fn(np.sqrt(var) * nodes)) / np.sqrt(2 * np.pi))


DERIV = {  # f'(z) in numpy
    "ReLU": lambda z: (z > 0).astype(float),
    "Tanh": lambda z: 1 - np.tanh(z) ** 2,
    "GELU": lambda z: ndtr(z) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi),
    "LeakyReLU": lambda z: np.where(z > 0, 1.0, 0.2),
}


def _linear(n_in: int, n_out: int, std_gain: float | None, gen: torch.Generator) -> nn.Linear:
    lin = nn.Linear(n_in, n_out, bias=False, dtype=D)
    with torch.no_grad():
        if std_gain is None:
            nn.init.orthogonal_(lin.weight, gain=1.2, generator=gen)
        else:
            lin.weight.normal_(0, std_gain / math.sqrt(n_in), generator=gen)
    return lin


@pytest.fixture(scope="module")
def mlp_table() -> tuple[nn.Sequential, torch.Tensor, AnalysisTable]:
    gen = torch.Generator().manual_seed(0)
    mlp = nn.Sequential(
        _linear(512, 512, math.sqrt(2), gen),
        nn.ReLU(),
        _linear(512, 512, 1.0, gen),
        nn.Tanh(),
        _linear(512, 256, 1.5, gen),
        nn.GELU(),
        _linear(256, 256, None, gen),
        nn.LeakyReLU(0.2),
    )
    x = torch.randn(32, 512, generator=gen, dtype=D)
    return mlp, x, analyze(mlp, x, probes=24, seed=1)


def test_rows_follow_the_blocks(mlp_table) -> None:
    mlp, _, table = mlp_table
    assert [r.name for r in table] == [str(i) for i in range(8)]
    assert [r.kind for r in table] == [type(m).__name__ for m in mlp]
    assert table["3"] is table[3] and table.total is table["total"]
    assert all(r.measured is not None and r.predicted is not None for r in table)


def test_linear_rows(mlp_table) -> None:
    mlp, _, table = mlp_table
    for i in (0, 2, 4, 6):
        w = mlp[i].weight.detach()
        out, n_in = w.shape
        exact_m1 = float((w**2).sum() / out)
        exact_m2 = float(((w @ w.T) ** 2).sum() / out)
        row = table[i]
        # measured: unbiased around the exact moments of this W
        assert abs(row.measured.m1 - exact_m1) <= 4 * row.measured.m1_stderr + 1e-12
        assert abs(row.measured.m2 - exact_m2) <= 4 * row.measured.m2_stderr + 1e-12
        # predicted from the actual scale: m1 = in * mean(W^2) = ||W||^2 / out exactly
        assert row.predicted_m1 == pytest.approx(exact_m1, rel=1e-9)
        if i == 6:  # orthogonal: detected, zero variance
            assert "orthogonal" in repr(row.model)
            assert row.predicted_m1 == pytest.approx(1.44, rel=1e-9)
            assert abs(row.predicted_variance) < 1e-12 and abs(row.measured.variance) < 1e-9
        else:  # Marchenko-Pastur: m2 = g^4 (1 + out/in); one draw is within O(1/n) of it
            g2 = exact_m1
            assert float(row.predicted.m2) == pytest.approx(g2**2 * (1 + out / n_in), rel=1e-9)
            assert row.measured.m2 == pytest.approx(float(row.predicted.m2), rel=0.03)


def test_activation_rows(mlp_table) -> None:
    mlp, x, table = mlp_table
    h = x
    for i, module in enumerate(mlp):
        if i % 2 == 1:
            row = table[i]
            name = type(module).__name__
            assert row.q == pytest.approx(float((h**2).mean()), rel=1e-12)
            # measured: exact diagonal Jacobian mean f'(h)^2 (Rademacher probes are exact)
            hh = h.detach().clone().requires_grad_(True)
            (d,) = torch.autograd.grad(module(hh).sum(), hh)
            assert row.measured.m1 == pytest.approx(float((d**2).mean()), rel=1e-9)
            # predicted: Gaussian integral at the measured q (independent quadrature)
            ref = gauss_mean(lambda z, f=DERIV[name]: f(z) ** 2, row.q)
            assert row.predicted_m1 == pytest.approx(ref, rel=1e-6)
            # one network: prediction and measurement agree up to finite-width fluctuations.
            # After a non-odd activation every unit has a fixed offset, so units, not samples,
            # are the independent draws: the error bar is the spread of per-unit means.
            d2, d4 = (d**2).mean(0), (d**4).mean(0)
            se_w = float(d2.std() / math.sqrt(d2.numel()))
            se_v = float(d4.std() / math.sqrt(d4.numel())) + 2 * ref * se_w
            assert abs(row.measured.m1 - row.predicted_m1) <= 4 * se_w + 0.01 * ref
            ref_var = gauss_mean(lambda z, f=DERIV[name]: f(z) ** 4, row.q) - ref**2
            assert abs(row.measured.variance - ref_var) <= 4 * se_v + 0.02 * ref_var
        with torch.no_grad():
            h = module(h)


def test_total_row(mlp_table) -> None:
    _, _, table = mlp_table
    tot = table.total
    assert tot.kind == "Sequential" and tot.model is not None
    # m1 of a free product is the product of the factors' m1, for the model (whose q's
    # propagate mean-field, close to the measured ones) and, up to O(1/sqrt(width)), for
    # the measurement of this one network
    assert tot.predicted_m1 == pytest.approx(np.prod([r.predicted_m1 for r in table]), rel=0.05)
    assert tot.measured.m1 == pytest.approx(np.prod([r.measured.m1 for r in table]), rel=0.06)
    assert tot.measured.m1 == pytest.approx(tot.predicted_m1, rel=0.3)  # coarse: one network


def test_unknown_block_is_measured_only() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16, dtype=D), nn.Softmax(dim=-1))
    x = torch.randn(8, 16, dtype=D)
    table = analyze(model, x, probes=200, seed=0)
    row = table["1"]
    assert row.predicted is None and row.model is None and math.isnan(row.predicted_m1)
    assert "Softmax" in row.note
    with torch.no_grad():
        h = model[0](x)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: torch.softmax(v, -1)))(h)
    exact = float((jac**2).sum((1, 2)).mean() / 16)
    assert abs(row.measured.m1 - exact) <= 4 * row.measured.m1_stderr
    assert table.total.predicted is None and "—" in repr(table)


def test_convolutions_and_residual_blocks_are_recognized() -> None:
    design = NetworkDesign(
        "cnn", width=8, depth=2, init="orthogonal", gain=1.3, activation="linear", image_size=4
    )
    net = build_network(design, seed=0)
    table = analyze(net, torch.randn(4, 8, 4, 4, dtype=D), probes=4, seed=0)
    for row in table:
        assert "delta_orthogonal" in repr(row.model)
        assert row.predicted_m1 == pytest.approx(1.69) and abs(row.predicted_variance) < 1e-12
        assert row.measured.m1 == pytest.approx(1.69, rel=1e-9)
    gauss = build_network(NetworkDesign("cnn", width=8, depth=1, gain=2.0), seed=0)
    w = gauss.block0[0].weight.detach()
    model, _ = predict_block(gauss.block0[0])
    assert model.init == "gaussian" and float(model.gain) ** 2 == pytest.approx(
        72 * float((w**2).mean())
    )
    res = build_network(
        NetworkDesign("residual", width=256, depth=2, gain=math.sqrt(2), residual_scale=0.5), seed=0
    )
    table = analyze(res, torch.randn(16, 256, dtype=D), probes=16, seed=0)
    for row in table:
        assert repr(row.model).startswith("Residual")
        # closed form for y = x + a F(x), F Kaiming ReLU: m1 = 1 + a^2, var = 2 a^2 + 2 a^4
        assert row.predicted_m1 == pytest.approx(1.25, rel=0.01)
        assert row.predicted_variance == pytest.approx(0.625, rel=0.02)
        assert row.measured.m1 == pytest.approx(1.25, rel=0.03)
        assert row.measured.variance == pytest.approx(0.625, rel=0.08)


def test_batchnorm_rows_and_state_untouched() -> None:
    bn = nn.BatchNorm1d(32, dtype=D)
    x = torch.randn(64, 32, dtype=D) * 2.0 + 0.5
    before = [b.clone() for b in bn.buffers()]
    row = analyze(bn, x, probes=64, seed=0)[0]
    assert all(torch.equal(a, b) for a, b in zip(before, bn.buffers())) and bn.training
    var = x.var(0, unbiased=False)
    # model: 1 / (mean channel variance + eps); measurement: batch Jacobian, rank (B - 2) / B
    assert row.predicted_m1 == pytest.approx(1 / float(var.mean() + bn.eps), rel=1e-9)
    exact = float((1 / (var + bn.eps)).mean()) * 62 / 64
    assert abs(row.measured.m1 - exact) <= 4 * row.measured.m1_stderr
    assert "O(1/batch)" in row.note
    bn.eval()
    with torch.no_grad():
        bn.running_var.fill_(2.0)
    row = analyze(bn, x, probes=2, seed=0)[0]
    assert row.predicted_m1 == pytest.approx(1 / (2.0 + bn.eps), rel=1e-9)
    assert row.measured.m1 == pytest.approx(row.predicted_m1, rel=1e-9)


class _Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8, dtype=D)
        self.act = nn.Tanh()
        self.unused = nn.ReLU()

    def forward(self, x):
        return x + self.act(self.lin(x))


def test_general_module_children_measured_at_their_inputs() -> None:
    torch.manual_seed(0)
    model = _Skip()
    x = torch.randn(6, 8, dtype=D)
    table = analyze(model, x, probes=8, seed=0)
    assert [r.name for r in table] == ["lin", "act", "unused"]
    with torch.no_grad():
        assert table["act"].q == pytest.approx(float((model.lin(x) ** 2).mean()), rel=1e-12)
    assert table["unused"].measured is None and "not called" in table["unused"].note
    assert table.total.predicted is None and table.total.measured is not None


def test_output_formats(mlp_table) -> None:
    _, _, table = mlp_table
    text = repr(table)
    assert text.splitlines()[0].startswith("block") and len(text.splitlines()) == 10
    page = table.to_html()
    assert page.startswith("<table") and page.count("<tr") == 10 and "±" in page
    assert table._repr_html_() == page
    d = table[0].as_dict()
    assert d["measured_m1"] == table[0].measured.m1 and d["name"] == "0"


def test_to_pandas(mlp_table) -> None:
    pytest.importorskip("pandas")
    frame = mlp_table[2].to_pandas()
    assert len(frame) == 9 and list(frame["name"])[-1] == "total"


def test_to_pandas_without_pandas_says_how_to_get_it(mlp_table, monkeypatch) -> None:
    real = importlib.import_module

    def no_pandas(name: str, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_pandas)
    with pytest.raises(ImportError, match="pip install pandas"):
        mlp_table[2].to_pandas()


def test_plot(mlp_table) -> None:  # plotly is a dependency: no skip
    _, _, table = mlp_table
    fig = table.plot()
    assert len(fig.data) == 4
    measured = fig.data[0]
    assert list(measured.y) == pytest.approx([r.measured.m1 for r in table])
    assert list(measured.error_y.array) == pytest.approx([r.measured.m1_stderr for r in table])
    assert list(fig.data[1].y) == pytest.approx([r.predicted_m1 for r in table])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"module": "mlp"}, TypeError, "module"),
        ({"x": [[1.0] * 4]}, TypeError, "x"),
        ({"x": torch.ones(4)}, ValueError, "x"),
        ({"x": torch.ones(2, 5)}, ValueError, r"x of shape \(2, 5\)"),
        ({"probes": 0}, ValueError, "probes"),
        ({"total": "yes"}, TypeError, "total"),
        ({"dtype": torch.int64}, TypeError, "dtype"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"module": nn.Sequential(nn.Linear(4, 3), nn.ReLU()), "x": torch.ones(2, 4), "probes": 2}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        analyze(**args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for torch")
def test_cuda_device_matches_cpu() -> None:
    design = NetworkDesign(width=64, depth=2, gain=1.2, activation="tanh")
    net = build_network(design, seed=0, device="cpu")  # the default is the GPU here
    x = torch.randn(8, 64, dtype=D)
    cpu = analyze(net, x, probes=8, seed=0)
    gpu = analyze(net.cuda(), x.cuda(), probes=8, seed=0)
    for a, b in zip(cpu._all(), gpu._all()):
        assert b.measured.m1 == pytest.approx(a.measured.m1, rel=1e-9)
        assert b.predicted_m1 == pytest.approx(a.predicted_m1, rel=1e-9)
