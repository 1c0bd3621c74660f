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
# # Batch normalization with a few uncorrelated data
#
# Batch normalization (BN) normalizes every channel with the mean and variance of the whole
# batch: two reductions over $N \cdot H \cdot W$ numbers per channel, in the forward and again
# in the backward pass. On a GPU these reductions, not the arithmetic, make BN one of the most
# expensive layers of a CNN's training step.
#
# Chen et al., *Effective and Efficient Batch Normalization Using a Few Uncorrelated Data for
# Statistics Estimation* (IEEE TNNLS 2020, arXiv 1810.10962) treat the statistics as a
# **sampling problem**: estimate them from a small subset $S$ of the data, and choose $S$ so
# that its members are as *uncorrelated* as possible.
#
# * **Batch sampling (BS)**: a few whole samples of the batch.
# * **Feature sampling (FS)**: a small patch of every sample's feature map.
# * **Virtual dataset normalization (VDN)**: the statistics of a few synthetic samples.
#
# The isometry paper of the same group adds **second-moment normalization (SMN)**, which divides
# by $\sqrt{E[x^2]}$ and skips the mean.
#
# **Contents.** 1 The estimator and its gradient · 2 Why correlation matters · 3 Measured on a
# real CNN · 4 Training with every variant · 5 Micro-batches · 6 The explorer · 7 Speed on a GPU
# · 8 Exercises

# %%
import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

import toolkit
import toolkit.norm as tn
from toolkit.norm import analysis as an

QUICK = toolkit.quick_mode()  # TOOLKIT_QUICK=1 shrinks every size
torch.set_num_threads(1)  # the digits and a 3-layer CNN gain nothing from threads
print("quick mode:", QUICK, "| CUDA path available:", toolkit.gpu_available())

# %% [markdown]
# ## 1. The estimator and its gradient
#
# For channel $c$ and a sample $S$ of $m$ data,
#
# $$\mu_c = \frac1m\sum_{i\in S} x_{ic},\qquad
#   \sigma_c^2 = \frac1m\sum_{i\in S}(x_{ic}-\mu_c)^2,\qquad
#   y_{ic} = \gamma_c\,\frac{x_{ic}-\mu_c}{\sqrt{\sigma_c^2+\epsilon}} + \beta_c$$
#
# for **every** datum $i$. The statistics depend on the sampled data only, so only they receive
# the statistics' share of the gradient. With $r = (\sigma^2+\epsilon)^{-1/2}$,
# $\hat x = r(x-\mu)$ and $g = \gamma\,\partial L/\partial y$:
#
# $$\frac{\partial L}{\partial x_i} = r\,g_i - [i\in S]\;\frac{r}{m}\Big(\sum_j g_j
#   + \hat x_i \sum_j g_j \hat x_j\Big).$$
#
# With $S$ = everything this is BN's backward. `toolkit.norm.sampled_batch_norm` computes it
# by autograd on the reference path, and with one fused reduction plus one elementwise pass on
# the CUDA path (`kernels/bn_sampling.cu`). The layers are drop-in replacements: with
# `sample_ratio=1.0`, `BatchSamplingBN2d` *is* `nn.BatchNorm2d`.

# %%
torch.manual_seed(0)
x = (2 + 3 * torch.randn(16, 4, 6, 6)).requires_grad_()
ours, ref = tn.BatchSamplingBN2d(4, sample_ratio=1.0), nn.BatchNorm2d(4)
y, y_ref = ours(x), ref(x)
(gx,) = torch.autograd.grad(y.square().sum(), x)
(gx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
print("sample_ratio=1: max |y - y_BN| =", float((y - y_ref).detach().abs().max()),
      "| max |dx - dx_BN| =", float((gx - gx_ref).abs().max()))

bs = tn.BatchSamplingBN2d(4, sample_ratio=0.25, seed=0)
fs = tn.FeatureSamplingBN2d(4, patch_ratio=0.25, seed=0)
for layer in (bs, fs):
    layer(x)
    s = layer.last_sample
    print(f"{type(layer).__name__}: rows {s.rows.tolist()[:6]}..., window {s.patch}, "
          f"{s.count} of {16 * 36} data per channel")

# %% [markdown]
# Only the sampled data get the statistics' gradient: perturb an unsampled sample and the
# statistics do not move.

# %%
sample = tn.batch_sample((16, 6, 6), 0.25, torch.Generator().manual_seed(1))
outside = [i for i in range(16) if i not in sample.rows.tolist()]
x2 = x.detach().clone()
x2[outside] += 100
_, m1, v1 = tn.sampled_batch_norm(x.detach(), sample)
_, m2, v2 = tn.sampled_batch_norm(x2, sample)
print("statistics unchanged:", torch.equal(m1, m2) and torch.equal(v1, v2))

# %% [markdown]
# ## 2. Why correlation matters
#
# Take $m$ data that come in clusters of $s$ with average pairwise correlation $\rho$ inside a
# cluster. The variance of their mean is Kish's **design effect**
#
# $$\operatorname{Var}\hat\mu = \frac{\sigma^2}{m}\bigl(1 + (s-1)\rho\bigr),$$
#
# so only $m_\text{eff} = m/(1+(s-1)\rho)$ of them count. BS takes whole feature maps
# ($s = HW$) whose positions are strongly correlated in deep layers, FS takes one small patch
# from every sample, spread over the whole batch. At the same $m$, FS's estimate is better.
# A synthetic check: a shared per-map effect of variance $\rho$ plus independent noise.

# %%
def clustered(n, c, h, w, rho, seed=0):
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, c, 1, 1, generator=g) * rho**0.5
    return shared + torch.randn(n, c, h, w, generator=g) * (1 - rho) ** 0.5

for rho in (0.0, 0.3, 0.7):
    curves = an.estimation_curves(clustered(256, 4, 4, 4, rho), counts=[256, 1024], trials=40)
    print(f"rho = {rho}: BS {curves.mean_error['BS'].round(3)}, predicted "
          f"{curves.predicted_bs.round(3)}; FS {curves.mean_error['FS'].round(3)}; "
          f"iid {curves.iid.round(3)}")

# %% [markdown]
# ## 3. Measured on a real CNN
#
# A small CNN (three 3×3 convolutions with BN) trained briefly on scikit-learn's 8×8 digits;
# we take the input of its third normalization layer (32 channels, 4×4 maps) for a batch of
# 512 images and measure BS, FS and iid random sampling at equal data counts.

# %%
acts = an.collect_activations(layer=2, samples=256 if QUICK else 512)
prof = an.correlation_profile(acts)
print("activations:", tuple(acts.shape))
print(f"correlation within a map (all pairs): {prof['rho_map'].mean():.3f}; "
      f"adjacent positions: {prof['rho_lag'][:, 0].mean():.3f}; "
      f"same position, two samples: {prof['rho_across'].mean():.3f}")
curves = an.estimation_curves(acts, trials=12 if QUICK else 48)
fig = go.Figure()
for method, err in curves.mean_error.items():
    fig.add_scatter(x=curves.counts, y=err, name=method, mode="lines+markers")
fig.add_scatter(x=curves.counts, y=curves.predicted_bs, name="BS, design effect",
                mode="lines", line=dict(dash="dash"))
fig.add_scatter(x=curves.counts, y=curves.iid, name="1/√m", mode="lines", line=dict(dash="dot"))
fig.update_layout(xaxis=dict(type="log", title="data per channel m"),
                  yaxis=dict(type="log", title="RMS (μ̂−μ)/σ"), height=380)
fig.show()
for j, m in enumerate(curves.counts):
    print(f"m = {m:5}: BS {curves.mean_error['BS'][j]:.4f}  FS {curves.mean_error['FS'][j]:.4f}"
          f"  random {curves.mean_error['random'][j]:.4f}")

# %% [markdown]
# **The paper's result, reproduced.** Whole maps are strongly correlated ($\rho \approx 0.6$),
# so BS needs several times the data of FS for the same error, and the design-effect line
# predicts BS's error from $\rho$ alone. One datum per sample (FS at the smallest $m$) is
# even a little better than iid sampling, because it spreads the sample evenly over the batch
# (stratification). FS's patches tile the map, so every position is equally likely to be
# sampled; with free placement, positions in the middle would be over-sampled and the
# estimate biased wherever activations depend on the position (borders of the digits).

# %% [markdown]
# ## 4. Training with every variant
#
# Each variant replaces the three BN layers (ratio 1/4: BS uses a quarter of the batch, FS a
# 4×4 patch of the 8×8 maps; VDN takes its statistics from 8 Gaussian virtual images with the
# data's pixel mean and variance; SMN normalizes by the second moment). Test accuracy over seeds:

# %%
seeds = (0,) if QUICK else (0, 1, 2)
acc = an.accuracy_table(seeds=seeds, epochs=3 if QUICK else 8)
for kind, values in acc.items():
    print(f"{an.NORM_KINDS[kind]:26} {100 * values.mean():6.2f} % ± {100 * values.std():.2f}")

# %% [markdown]
# ## 5. Micro-batches
#
# With one to four images per batch BN's statistics come from very few, strongly correlated
# data. GroupNorm needs no batch at all; VDN's virtual samples give every step the same number
# of data; FS takes half of each map.

# %%
micro = an.microbatch_table((1, 2, 4) if QUICK else (1, 2, 3, 4), epochs=1)
for kind, table in micro.items():
    print(f"{an.NORM_KINDS[kind]:26}", "  ".join(f"{100 * a.mean():6.2f}" for a in table))

# %% [markdown]
# ## 6. The explorer
#
# Pick the sampling method, the sample ratio and the batch size: the star marks the current
# setting on the error curves of all three methods; below, the correlations behind them; the
# button trains every variant for the accuracy table.

# %%
from toolkit.widgets import NormSamplingExplorer

NormSamplingExplorer(acts, batch_size=128, trials=8 if QUICK else 24, accuracy=acc)

# %% [markdown]
# ## 7. Speed on a GPU
#
# The point of sampling is a cheaper reduction. On a CUDA machine the layers run the fused
# kernels; `benchmarks/norm.py` times them against cuDNN's `BatchNorm2d` at the ResNet-50 shapes
# and records the results in `benchmarks/RESULTS.md`. A quick check here, when a GPU is present:

# %%
if toolkit.gpu_available():
    xg = torch.randn(128, 256, 56, 56, device="cuda", requires_grad=True)
    for name, layer in (("cuDNN BN", nn.BatchNorm2d(256)),
                        ("BS 1/4", tn.BatchSamplingBN2d(256, 0.25, seed=0))):
        layer = layer.cuda()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(3):
            layer(xg).sum().backward()
        start.record()
        for _ in range(10):
            layer(xg).sum().backward()
        end.record()
        end.synchronize()
        print(f"{name}: {start.elapsed_time(end) / 10:.3f} ms forward + backward")
else:
    print("no GPU here: see benchmarks/RESULTS.md for measured numbers")

# %% [markdown]
# ## 8. Exercises
#
# 1. Derive the backward formula of section 1 from $y = \gamma r (x-\mu) + \beta$ with
#    $\mu, r$ functions of the sampled data. Why does $\partial\sigma^2/\partial\mu$ vanish?
# 2. Use the design effect to find the sample ratio at which BS on the real activations matches
#    the error of FS with one datum per sample. Check it in the explorer.
# 3. Run `an.estimation_curves` on `an.collect_activations(layer=0)`, the first layer. Why is
#    the intra-map correlation there close to zero, and which method wins now?
# 4. Replace the tiled patches by freely placed ones (`torch.randint` corners) and measure the
#    bias of FS on layer 0. Which positions are over-sampled?
# 5. Train with `VirtualDatasetNorm2d(real_ratio=0.25)` (mix a quarter of the real batch into
#    the statistics): does accuracy move towards BN's?
