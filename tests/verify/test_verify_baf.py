"""Backward-forward (baf): the attention outputs' forward bounds are plugged in correctly.

baf back-substitutes down to the attention outputs (``L*.merge``) and there replaces
``A . merge`` by ``A^+ (lw.delta + lb) + A^- (uw.delta + ub)``.  The node right after the
merge, ``L0.attention = merge @ W_o + b``, is linear, so in exact arithmetic that substitution
gives the *same* linear functions as the forward method's step through ``W_o``
(``W^+ lw + W^- uw``).  In layer 0 every attention node has identical bounds under
``forward`` and ``baf``, so baf's bounds of ``L0.attention`` must equal forward's.  Any slip in
which side (lower/upper) of the forward bounds meets which sign of ``A`` breaks the equality
(and makes baf unsound there), even when it stays hidden in the looser logit bounds.
"""

from __future__ import annotations

import pytest
import torch

from toolkit.verify import LpBall, bounds, build_graph

from ._helpers import tiny_input, tiny_model


@pytest.mark.parametrize(
    "layernorm,activation,p,eps",
    [
        ("no_var", "relu", 2, 0.3),
        ("standard", "gelu", "inf", 0.1),
        ("none", "tanh", 1, 0.5),
    ],
)
def test_baf_substitutes_attention_forward_bounds_with_the_right_sides(
    layernorm, activation, p, eps
):
    m = tiny_model(21, layers=2, layernorm=layernorm, activation=activation)
    e = tiny_input(m, B=2, T=4, seed=21)
    spec = LpBall(eps, p=p, positions=[0, 2])
    _, _, fwd = bounds(m, e, spec, "forward", return_intermediate=True)
    _, _, baf = bounds(m, e, spec, "baf", return_intermediate=True)
    fl, fu = fwd["L0.attention"]
    bl, bu = baf["L0.attention"]
    # the forward bounds must be non-trivial (else both sides coincide and nothing is tested)
    assert float((fu - fl).min()) > 1e-3
    scale = 1e-9 * (1 + fl.abs().max())
    torch.testing.assert_close(bl, fl, rtol=0, atol=float(scale))
    torch.testing.assert_close(bu, fu, rtol=0, atol=float(scale))


def test_baf_attention_output_bounds_contain_sampled_values():
    m = tiny_model(22, layers=1, layernorm="no_var", activation="relu")
    e = tiny_input(m, B=1, T=4, seed=22)
    spec = LpBall(0.4, p=2, positions=[1, 2])
    dom = spec.domains(e)[0]
    x = dom.apply(dom.sample(512, torch.Generator().manual_seed(0), "surface"))
    vals = build_graph(m, 4).evaluate(x.reshape(-1, 4, 8))["L0.attention"]
    _, _, inter = bounds(m, e, spec, "baf", return_intermediate=True)
    lo, hi = inter["L0.attention"]
    assert (vals >= lo - 1e-9).all() and (vals <= hi + 1e-9).all()
