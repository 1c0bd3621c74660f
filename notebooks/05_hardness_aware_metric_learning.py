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
# # Hardness-aware deep metric learning
#
# Deep metric learning trains an embedding in which images of the same class lie close and
# images of different classes lie far apart, so that retrieval by nearest neighbour works,
# even for classes never seen in training. Most methods *mine* hard negatives: they keep the
# few tuples that still violate the margin and throw the rest away. Zheng, Chen, Lu and Zhou
# (*Hardness-Aware Deep Metric Learning*, CVPR 2019) instead *synthesise* hard negatives from
# every tuple, at a difficulty that follows training, and map them back to feature space with a
# label-preserving generator so that they can be recycled.
#
# **Contents.** 1 Tuples and losses · 2 Hardness-aware synthesis · 3 The generator and the full
# objective · 4 Retrieval metrics · 5 The paper's result on zero-shot digits · 6 The explorer ·
# 7 Exercises

# %%
import math

import numpy as np
import plotly.graph_objects as go
import torch

import toolkit
from toolkit import metric as ml

QUICK = toolkit.quick_mode()  # TOOLKIT_QUICK=1 shrinks every size
torch.manual_seed(0)

# %% [markdown]
# ## 1. Tuples and losses
#
# An embedding $f$ maps an input to $z \in \mathbb R^D$. A **triplet** is an anchor $z$, a
# positive $z^+$ of the same class and a negative $z^-$ of another class. With Euclidean
# distances $d^+ = \lVert z^+ - z\rVert$ and $d^- = \lVert z^- - z\rVert$ the triplet loss is
#
# $$J_\text{triplet} = \bigl[d^+ - d^- + m\bigr]_+ .$$
#
# The **N-pair** loss takes one pair $(z_i, z_i^+)$ from each of $N$ classes and uses the other
# classes' positives as negatives:
# $J = \frac1N\sum_i \log\bigl(1 + \sum_{j\ne i} e^{z_i^\top z_j^+ - z_i^\top z_i^+}\bigr)$,
# the softmax cross-entropy of $z_i$ against all positives.

# %%
a, p = torch.randn(4, 8), torch.randn(4, 8)
print("N-pair loss:", ml.npair_loss(a, p).item())
print("as a cross-entropy:", torch.nn.functional.cross_entropy(a @ p.T, torch.arange(4)).item())
print(
    "triplet loss with the N-pair negatives:", ml.triplet_loss(a, p, ml.npair_negatives(p)).item()
)

# %% [markdown]
# Once most triplets satisfy the margin, the loss is zero for them and they teach nothing:
# training stalls on easy tuples. Mining keeps the hard ones, but discards most of the data.
#
# ## 2. Hardness-aware synthesis
#
# HDML moves each negative along the segment towards its anchor:
#
# $$\hat z^- = z + \bigl[d^+ + (d^- - d^+)\,\lambda\bigr]\frac{z^- - z}{d^-},
# \qquad \lambda = e^{-\alpha / J_\text{avg}},$$
#
# only where $d^+ < d^-$ (a negative already closer than the positive is hard enough and stays).
# $J_\text{avg}$ is the running mean of recent metric losses. Early in training the loss is
# large, $\lambda \approx 1$ and $\hat z^- \approx z^-$; as the model improves the loss drops,
# $\lambda \to 0$ and the synthetic negative approaches distance $d^+$ from the anchor: the
# hardest negative that is still ranked correctly.

# %%
z, zp, zn = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 4.0]])
for j_avg in (1e3, 1.0, 0.1, 1e-3):
    s = ml.hardness_aware_negative(z, zp, zn, j_avg, alpha=1.0)
    print(
        f"J_avg={j_avg:g}: λ={ml.hardness(j_avg, 1.0):.3f}, "
        f"d(z, ẑ⁻)={s.norm().item():.3f}  (d⁺=1, d⁻=4)"
    )

# %%
j = np.logspace(-2, 2, 200)
fig = go.Figure()
for alpha in (0.1, 1.0, 10.0):
    fig.add_scatter(x=j, y=np.exp(-alpha / j), name=f"α = {alpha:g}")
fig.update_layout(
    xaxis_type="log",
    xaxis_title="J_avg",
    yaxis_title="λ = e^(−α/J_avg)",
    title="Hardness: small losses pull the negatives in",
    height=350,
)
fig

# %% [markdown]
# The same function handles N-pair tuples: a negative tensor of shape `[N, K, D]` moves each
# of the $K$ negatives of anchor $i$ with that anchor's $d^+$. Gradients flow to the anchor,
# the positive and the negative where the negative is moved, and only to the negative where it
# is kept; $J_\text{avg}$ is a statistic and is not differentiated.

# %%
anchors = torch.randn(5, 8)
positives = anchors + 0.3 * torch.randn(5, 8)
synthetic = ml.hardness_aware_negative(anchors, positives, ml.npair_negatives(positives), 0.05, 1.0)
print(synthetic.shape)

# %% [markdown]
# ## 3. The generator and the full objective
#
# A synthetic embedding has no image, so HDML learns a **generator** $g$ from embedding space
# back to feature space $y$ (the backbone's output; the embedding is a linear head
# $z = f(y)$). Its loss has two parts:
#
# * $J_\text{recon} = \lVert g(z) - y\rVert^2$ on the real batch: $g$ inverts the head;
# * $J_\text{soft}$: a softmax classifier (trained on real features) must recognise each
#   synthetic feature $g(\hat z)$ as the label of the tuple member it came from, so the
#   synthetic negative keeps the negative's class (label preservation);
#
# $J_\text{gen} = J_\text{recon} + \lambda\, J_\text{soft}$. The synthetic tuple is embedded
# again, $\tilde z = f(g(\hat z))$, and the same metric loss on it gives $J_\text{syn}$. The
# embedding trains on
#
# $$J_\text{metric} = e^{-\beta/J_\text{gen}}\,J_m + \bigl(1 - e^{-\beta/J_\text{gen}}\bigr)\,J_\text{syn},$$
#
# so while the generator is poor ($J_\text{gen}$ large) the real loss dominates. Three
# optimizers: the backbone and head minimise $J_\text{metric}$, the generator $J_\text{gen}$,
# the classifier its cross-entropy on real features. The paper's values are $\alpha = 90$
# (triplet; 7 for N-pair), $\beta = 10^4$, $\lambda = 0.5$; $\alpha$ and $\beta$ are compared
# with loss values, so `DIGITS_CONFIG` rescales them to the small model used here.

# %%
print("paper:", ml.PAPER_CONFIG)
print("digits:", ml.DIGITS_CONFIG)
net = ml.EmbeddingNet(embed_dim=16)
trainer = ml.HDML(net, num_classes=5, config=ml.DIGITS_CONFIG)
x, y = torch.rand(60, 64), torch.arange(60) % 5
for _ in range(3):
    stats = trainer.step(x, y)
{k: round(v, 4) for k, v in stats.items()}

# %% [markdown]
# ## 4. Retrieval metrics
#
# * **Recall@K**: the share of queries whose $K$ nearest other embeddings include one of the
#   query's class (leave-one-out over the test set).
# * **NMI**: normalised mutual information between the labels and a k-means clustering of the
#   embeddings with as many clusters as classes.
# * **MAP@R**: for a query whose class has $R$ other members, the mean over the first $R$ ranks of
#   the precision at each relevant rank (Musgrave et al., 2020).
#
# All three rank neighbours with `retrieval_topk`, which never builds the full $N\times N$
# distance matrix (a CUDA kernel does it on a GPU).

# %%
emb = torch.cat([torch.randn(30, 4) + 4 * torch.randn(1, 4) for _ in range(3)])
lab = torch.arange(3).repeat_interleave(30)
print(ml.recall_at_k(emb, lab), ml.nmi(emb, lab), ml.map_at_r(emb, lab))

# %% [markdown]
# ## 5. The paper's result, reproduced on zero-shot digits
#
# scikit-learn's 8×8 digits: train on digits 0–4, retrieve among the unseen digits 5–9. Both
# methods use the same network, the same tuples, the same optimizer and the same number of
# steps; only HDML adds the synthetic tuples. Several seeds, mean ± std. (Quick mode runs
# short trainings, where the generator has not learnt much yet; the full run, 5 seeds × 600
# steps, measured Recall@1 68.1 ± 6.4 % for HDML against 57.2 ± 4.0 % for the triplet loss
# alone.)

# %%
comparison = ml.compare_on_digits(seeds=range(2 if QUICK else 5), steps=100 if QUICK else 600)
header = ["metric (%)", "triplet loss", "triplet + HDML"]
print("{:<10} {:>16} {:>16}".format(*header))
for row in comparison.rows():
    print("{:<10} {:>16} {:>16}".format(*row))

# %% [markdown]
# ## 6. The explorer
#
# Pick an anchor among the unseen digits, a positive and a negative (ranked by distance to the
# anchor), and move the hardness slider: the synthetic negative slides along the segment from
# the negative towards the anchor and stops at distance $d^+$. Below: training curves ($J_m$
# of both methods, $J_\text{syn}$, $\lambda$ and the real-loss weight) and the Recall@K table.

# %%
from toolkit.widgets import MetricLearningExplorer

explorer = MetricLearningExplorer(comparison)
explorer

# %%
# a far negative (rank 200 by distance to the anchor), then a small J_avg: it is pulled to d⁺
explorer.controls["negative"].value = 200
for log_j in (math.log10(ml.DIGITS_CONFIG.alpha * 10), math.log10(ml.DIGITS_CONFIG.alpha / 10)):
    explorer.controls["log_j_avg"].value = log_j
    print(explorer.readout.value.replace("<br>", "; "))

# %% [markdown]
# ## 7. Exercises
#
# 1. Show from the formula that $d(z, \hat z^-)$ lies between $d^+$ and $d^-$ and is increasing
#    in $J_\text{avg}$. Check it numerically with `ml.hardness_aware_negative`.
# 2. Train with `loss="npair"` (`ml.compare_on_digits(loss="npair", ...)`). Does HDML help the
#    N-pair loss as much as the triplet loss on digits?
# 3. Vary $\alpha$ in `ml.DIGITS_CONFIG` (`dataclasses.replace(ml.DIGITS_CONFIG, alpha=...)`).
#    What happens when $\lambda$ stays near 1 for the whole run? Near 0?
# 4. Set $\beta$ very large, so that $e^{-\beta/J_\text{gen}} \approx 0$ from the second step:
#    the embedding learns from synthetic tuples only. What happens to Recall@1?
# 5. With pytorch-metric-learning installed, pass
#    `loss=ml.from_pml(losses.TripletMarginLoss(margin=0.2))` and a
#    `miners.TripletMarginMiner` to `ml.HDML` and compare with random triplets.
