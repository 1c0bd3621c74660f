# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Spiking networks trained by backpropagation through time
#
# Spiking neural networks (SNNs) compute with binary events over time. Trained with
# **backpropagation through time (BPTT)** and surrogate gradients they reach ANN-like accuracy,
# but GPUs run BPTT for SNNs poorly: the spikes are binary and sparse, the gradients are sparse,
# and dense GEMM kernels use none of it. **H2Learn** (Liang et al., IEEE TCAD 2022) first
# characterizes BPTT learning, then builds an accelerator on three observations: (1) forward
# and weight-update accumulations over binary spikes can be done by **lookup tables (LUTs)**;
# (2) the backward pass is **sparse in both its input and its output**; (3) the engines can be
# **pipelined**. It reports 5.74–10.20× speed and 5.25–7.12× energy against a V100.
#
# **Contents.** 1 LIF dynamics · 2 BPTT with surrogate gradients · 3 Training on the digits ·
# 4 The characterization · 5 LUT accumulation · 6 The cost model · 7 Where the gains come
# from · 8 The explorer · 9 Exercises

# %%
import numpy as np
import plotly.graph_objects as go
import torch

import toolkit
from toolkit.snn import (
    SURROGATES,
    h2learn_cost,
    lif_multistep,
    lut_accumulate,
    lut_counts,
    sparsity_profile,
    surrogate_grad,
    train_default,
)

QUICK = toolkit.quick_mode()  # TOOLKIT_QUICK=1 shrinks every size
DEVICE = "cuda" if toolkit.gpu_available() else "cpu"  # on a GPU the fused kernels run
torch.manual_seed(0)

# %% [markdown]
# ## 1. LIF dynamics
#
# A leaky integrate-and-fire neuron charges, fires and resets at every step $t$:
#
# $$H[t] = V[t-1] + \tfrac{1}{\tau}\big(X[t] - (V[t-1] - V_{reset})\big), \qquad
# S[t] = \Theta(H[t] - V_{th}),$$
#
# and a hard reset sets $V[t] = H[t](1 - S[t]) + V_{reset} S[t]$ (a soft reset subtracts
# $V_{th}$ instead). With a constant input $X$ the potential relaxes towards $X$ with time
# constant $\tau$; it fires periodically when $X > V_{th}$.

# %%
currents = torch.tensor([0.8, 1.2, 1.6, 2.4], dtype=torch.float64)
x = currents.expand(30, 4)
spikes, v = lif_multistep(x, tau=2.0, return_membrane=True)
fig = go.Figure()
for k, c in enumerate(currents.tolist()):
    fig.add_scatter(y=v[:, k].numpy(), mode="lines", name=f"X = {c}")
fig.update_layout(
    title="membrane potential after reset", xaxis_title="step", yaxis_title="V", height=300
)
fig.show()
print("firing rates:", spikes.mean(0).tolist())

# %% [markdown]
# The rate grows with the input: for a hard reset to 0 and $\tau = 2$, the potential after
# $k$ steps of charging is $X(1 - 2^{-k})$, so a neuron with $X = 2.4$ fires every second step
# and one with $X = 0.8 < V_{th}$ never fires. Check it in the printed rates.

# %% [markdown]
# ## 2. BPTT with surrogate gradients
#
# $\Theta$ has derivative zero almost everywhere, so BPTT replaces $\partial S/\partial H$ by a
# surrogate $\sigma'(H - V_{th})$. The unrolled recurrence then carries gradients through the
# membrane: $\partial L/\partial H[t] = \partial L/\partial S[t]\,\sigma'[t] +
# \partial L/\partial V[t]\,\partial V[t]/\partial H[t]$ and
# $\partial L/\partial V[t-1] = (1 - 1/\tau)\,\partial L/\partial H[t]$. The four surrogates:

# %%
u = torch.linspace(-2, 2, 401, dtype=torch.float64)
fig = go.Figure()
for name in SURROGATES:
    fig.add_scatter(x=u.numpy(), y=surrogate_grad(u, name).numpy(), name=name)
fig.update_layout(
    title="surrogate derivatives σ'(u), default α", xaxis_title="u = H − V_th", height=300
)
fig.show()

# %% [markdown]
# `rectangular` and `triangle` are *exactly zero* away from the threshold; `atan` and `sigmoid`
# only become small. That difference decides how much sparsity the backward pass has.
# The gradient of one neuron's spike count with respect to its input, by autograd through the
# reference path (or the fused CUDA kernels on a GPU):

# %%
x = torch.full((8, 1), 1.3, dtype=torch.float64, requires_grad=True)
for name in SURROGATES:
    (g,) = torch.autograd.grad(lif_multistep(x, surrogate=name).sum(), x)
    print(f"{name:12s}", np.round(g.flatten().numpy(), 3))

# %% [markdown]
# ## 3. Training on the digits
#
# The default network: scikit-learn's 8×8 digits, rate-coded over $T = 8$ steps (each pixel
# spikes with probability equal to its intensity), a spiking MLP 64-128-10 with LIF neurons and
# the ATan surrogate, and a non-spiking readout (the last layer's output averaged over time).

# %%
net, result, data = train_default(quick=QUICK, device=DEVICE)
fig = go.Figure()
fig.add_scatter(y=result.test_accuracy, mode="lines+markers", name="test accuracy")
fig.add_scatter(y=result.train_accuracy, mode="lines+markers", name="train accuracy")
fig.update_layout(title="BPTT on the digits", xaxis_title="epoch", height=300)
fig.show()
print(
    f"test accuracy {result.final_test_accuracy:.3f} after {len(result.loss)} epochs "
    f"({result.seconds:.1f} s)"
)

# %% [markdown]
# ## 4. The characterization
#
# `sparsity_profile` runs one forward and backward pass with hooks and measures, per layer and
# time step: the density of the spikes entering each synapse, the neurons' firing density, and
# the fraction of zero (or small) entries of the gradient flowing in ($\partial L/\partial S$)
# and flowing out ($\partial L/\partial X$) of the neurons, plus the weight gradient's.

# %%
profile = sparsity_profile(net, (data.x_test[:256], data.y_test[:256]))
for row in profile.summary():
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
fig = go.Figure(
    go.Heatmap(z=profile.spike_density, y=profile.names, colorscale="Blues", zmin=0, zmax=1)
)
fig.update_layout(title="spike density (layer × step)", xaxis_title="step", height=250)
fig.show()

# %% [markdown]
# With ATan the gradients are never exactly zero. Retrain with a compact surrogate and the
# backward pass becomes genuinely sparse — H2Learn's "dual sparsity":

# %%
from toolkit.snn import spiking_mlp, train_bptt  # noqa: E402

rect = spiking_mlp((64, 128, 10), steps=8, surrogate="rectangular").to(DEVICE)
train_bptt(rect, data.x_train, data.y_train, epochs=2 if QUICK else 10, progress=False)
rect_profile = sparsity_profile(rect, (data.x_test[:256], data.y_test[:256]))
print("dL/dX exact zeros per step, hidden layer:", np.round(rect_profile.grad_out_zero[0], 3))

# %% [markdown]
# ## 5. LUT accumulation
#
# For binary spikes $s$, $y = Ws$ is a sum of the weights whose input spiked. Group the inputs
# by $g$; precompute, per output and group, the $2^g$ sums of every subset of the group's
# weights; then each group costs one lookup indexed by its $g$ spike bits. The result is the
# dense product exactly:

# %%
w = torch.randint(-512, 512, (10, 64), dtype=torch.float64) / 256
s = (torch.rand(32, 64) < 0.2).double()
print("equal to F.linear:", torch.equal(lut_accumulate(s, w, group=4), s @ w.T))
dens = np.linspace(0.01, 0.6, 40)
fig = go.Figure()
for g in (2, 4, 8):
    fig.add_scatter(
        x=dens,
        y=[lut_counts(512, 128, g, d, 1024).add_saving_vs_skip for d in dens],
        name=f"g = {g}",
    )
fig.add_hline(y=1, line_dash="dot")
fig.update_layout(
    title="additions: zero-skipping / LUT (table built once per 1024 samples)",
    xaxis_title="spike density",
    height=300,
)
fig.show()

# %% [markdown]
# Against zero-skipping, the LUT wins once the density is moderate: a lookup replaces up to
# $g$ additions, but only groups with at least one spike are looked up, and the tables cost
# $2^g - g - 1$ additions each (amortized over every sample and step that shares the weights).
# Very sparse inputs favour skipping; large $g$ needs many samples to amortize its tables.

# %% [markdown]
# ## 6. The cost model
#
# `h2learn_cost` counts operations and DRAM traffic of the three BPTT phases for a dense
# GPU-style baseline and an H2Learn-style design, and prices them with an editable table
# (`toolkit.snn.DEFAULT_TABLE`; the assumptions are listed in `toolkit.snn.cost`'s docstring).

# %%
for name, prof in (("ATan", profile), ("rectangular", rect_profile)):
    cost = h2learn_cost(prof, group=4)
    print(
        f"{name:12s} speed-up {cost.speedup:5.2f}×, energy {cost.energy_saving:5.2f}×, "
        f"op reduction per phase {np.round(cost.op_reduction, 2)}"
    )
cost = h2learn_cost(rect_profile, group=4)
fig = go.Figure()
fig.add_bar(x=["forward", "backward", "update"], y=1e6 * cost.baseline_time.sum(0), name="dense")
fig.add_bar(x=["forward", "backward", "update"], y=1e6 * cost.accel_time.sum(0), name="H2Learn")
fig.update_layout(barmode="group", yaxis_title="µs per sample", height=300)
fig.show()

# %% [markdown]
# ## 7. Where the V100 comparison's gains come from
#
# Switch each mechanism off in turn (group $g = 1$ disables the LUT's fusion, `pipelined=False`
# serializes the engines, an expensive SRAM makes lookups cost more):

# %%
rows = {
    "all mechanisms": h2learn_cost(rect_profile, group=4),
    "no LUT fusion (g = 1)": h2learn_cost(rect_profile, group=1),
    "no pipelining": h2learn_cost(rect_profile, group=4, pipelined=False),
    "no dual sparsity (ATan)": h2learn_cost(profile, group=4),
    "DRAM 10× cheaper": h2learn_cost(rect_profile, group=4, table={"dram_byte_pj": 16.0}),
}
for label, c in rows.items():
    print(f"{label:26s} speed-up {c.speedup:5.2f}×  energy {c.energy_saving:5.2f}×")

# %% [markdown]
# Under these assumptions (read the printed table; quick mode trains less):
#
# * **speed** comes first from **pipelining** (the three engines overlap, so a step costs
#   its longest phase instead of the sum), then from the **fewer operations** of the LUT
#   forward and update engines over sparse binary spikes, and, with a compact surrogate,
#   from the backward engine's **dual sparsity**;
# * **energy** comes mostly from doing **fewer and cheaper operations** (additions and SRAM
#   lookups instead of fp16 multiply-accumulates): making DRAM ten times cheaper barely moves
#   the ratio, so the bit-packed spikes and compressed gradients matter less here.
#
# The estimates are of the order of the paper's 5.74–10.20× and 5.25–7.12×, but they come
# from a counting model with iso-throughput assumptions, not from H2Learn's simulator.

# %% [markdown]
# ## 8. The explorer
#
# Neuron dynamics, LUT savings and the cost breakdown follow the controls; "Train + profile"
# trains the MLP with the chosen surrogate and τ and fills the training curves and the
# sparsity heatmaps.

# %%
from toolkit.widgets import SNNExplorer  # noqa: E402

explorer = SNNExplorer(epochs=1 if QUICK else 5)
explorer  # noqa: B018

# %% [markdown]
# ## 9. Exercises
#
# 1. Show that for $\tau \to \infty$ with `decay_input=False` (the IF neuron,
#    `toolkit.snn.IFNeuron`) the firing rate with constant input $X < V_{th}$ is
#    $X / V_{th}$ in the long run. Check it numerically.
# 2. Train with `surrogate="triangle"` and different `alpha`. How do accuracy and the backward
#    sparsity trade off?
# 3. At which spike density does the LUT beat zero-skipping for $g = 4$ and $g = 8$? Derive it
#    from the counts in `toolkit.snn.lut`'s docstring, ignoring the table build.
# 4. Set `table={"baseline_utilization": 0.9}` in `h2learn_cost`. Which of the paper's claims
#    survive a better-used GPU?
# 5. Replace the rate encoder by `encoder="direct"`. The first layer's input is no longer
#    binary: what does that do to the forward LUT in hardware?
