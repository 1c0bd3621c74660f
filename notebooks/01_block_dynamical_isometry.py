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
# # Block dynamical isometry: gradient-norm equality through free probability
#
# Deep networks train badly when gradient norms explode or vanish on their way back through the
# layers. Chen, Deng, Wang, Li and Xie (*A Comprehensive and Modularized Statistical Framework
# for Gradient Norm Equality in Deep Neural Networks*, TPAMI 2020) turn "are the gradients
# healthy?" into two numbers per block, and compute them with free probability. This notebook
# builds the idea from scratch, reproduces the classic results, and ends with the paper's design
# rules and some exercises.
#
# **Contents.** 1 Jacobians and gradient norms · 2 The two block metrics · 3 Free probability in
# four cells · 4 Spectra · 5 Classic results · 6 Real torch models · 7 The explorer ·
# 8 The paper's applications · 9 Exercises

# %%
import numpy as np
import plotly.graph_objects as go
import sympy as sp
import torch
from plotly.subplots import make_subplots

import toolkit
from toolkit import isometry as iso

QUICK = toolkit.quick_mode()          # TOOLKIT_QUICK=1 shrinks every size
WIDTH = 64 if QUICK else 256
SAMPLES = 2 if QUICK else 6
_ = torch.manual_seed(0)


# %% [markdown]
# ## 1. Jacobians and gradient norms
#
# A network is a chain of blocks $x_{\ell} = f_\ell(x_{\ell-1})$. Back-propagation sends the
# gradient through the transposed Jacobians, $\nabla_{x_{\ell-1}} = J_\ell^T \nabla_{x_\ell}$, so
# after $L$ blocks the gradient has been multiplied by $J^T = J_1^T \cdots J_L^T$. For a gradient
# $g$ in a random direction,
#
# $$\mathbb E\,\|J^T g\|^2 = \phi(JJ^T)\,\|g\|^2, \qquad \phi(A) = \frac{\mathbb E\,\operatorname{tr} A}{\dim A}.$$
#
# So $\phi(JJ^T)$ is the average factor by which the squared gradient norm grows, and the spread
# of the eigenvalues of $JJ^T$ says how much it fluctuates from direction to direction. Let us
# watch it happen on a plain ReLU network, initialised well (Kaiming, gain $\sqrt 2$) and badly
# (gain 1).

# %%
def gradient_norms(gain, depth=30, width=WIDTH):
    layers = []
    for _ in range(depth):
        linear = torch.nn.Linear(width, width, bias=False)
        torch.nn.init.normal_(linear.weight, std=gain / width**0.5)
        layers += [linear, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers)
    x = torch.randn(64, width, requires_grad=True)
    acts = []
    h = x
    for layer in net:
        h = layer(h)
        h.retain_grad()
        acts.append(h)
    h.pow(2).sum().backward()
    return [a.grad.norm().item() for a in acts[::2]]

fig = go.Figure()
for gain in (2**0.5, 1.0, 1.6):
    fig.add_scatter(y=gradient_norms(gain), name=f"gain {gain:.3g}", mode="lines+markers")
fig.update_layout(yaxis_type="log", xaxis_title="layer", yaxis_title="‖∂loss/∂x_ℓ‖",
                  title="Gradient norms across depth: only gain √2 keeps them equal", height=380)
fig

# %% [markdown]
# ## 2. The two block metrics
#
# For every block the paper looks at the first two moments of $JJ^T$:
#
# * the **first moment** $\phi(JJ^T)$ (the average gain of squared gradient norms), and
# * the **variance** $\varphi(JJ^T) = \phi\big((JJ^T)^2\big) - \phi(JJ^T)^2$ (how unequal the
#   gains are across directions).
#
# A network has **block dynamical isometry** when every block has $\phi \approx 1$ and
# $\varphi \approx 0$. The toolkit computes both for a component library. A square Gaussian
# layer with entries of variance $g^2/n$ has $JJ^T = WW^T$, whose eigenvalues follow the
# Marchenko–Pastur law; its moments are $g^{2k}$ times the Catalan numbers:

# %%
g = sp.Symbol("g", positive=True)
layer = iso.Linear(512, 512, gain=g)
m = layer.moments(order=5)
[sp.simplify(m.moment(k) / g**(2 * k)) for k in range(1, 6)]   # 1, 2, 5, 14, 42: Catalan

# %%
# The same numbers from sampled matrices (Monte Carlo) -- an independent check.
W = torch.randn(WIDTH, WIDTH, dtype=torch.float64) / WIDTH**0.5
eig = torch.linalg.eigvalsh(W @ W.T).numpy()
[round(float(np.mean(eig**k)), 2) for k in range(1, 6)]

# %% [markdown]
# An orthogonal layer has all eigenvalues of $JJ^T$ equal to $g^2$: variance zero. An
# activation has a diagonal Jacobian with entries $f'(h)$, so its moments are
# $\phi = \mathbb E[f'(h)^2]$ and $\phi((JJ^T)^2) = \mathbb E[f'(h)^4]$ for pre-activations
# $h \sim N(\bar a, q - \bar a^2)$. The second moment $q$, the squared per-unit mean $c$ and
# the mean $\bar a$ are propagated forward, mean-field style (`iso.ForwardStats`): a layer
# multiplies $q$ and $c$ by $g^2$ and sets $\bar a$ to 0; an activation maps $q$ to
# $\mathbb E[f(h)^2]$ and $\bar a$ to $\mathbb E[f(h)]$.

# %%
for block in (iso.Linear(256, 256, init="orthogonal", gain=1), iso.ReLU(), iso.Tanh(),
              iso.LeakyReLU(sp.Rational(1, 5))):
    m = block.moments(q=1)
    print(f"{block!r:45} φ = {sp.nsimplify(m.m1) if not isinstance(m.m1, float) else round(m.m1, 4)}"
          f"   variance = {m.variance if not isinstance(m.variance, float) else round(m.variance, 4)}")

# %% [markdown]
# ## 3. Free probability in four cells
#
# Serial blocks multiply Jacobians: $J = J_2 J_1$. When the factors are *asymptotically free*
# (random layers in general position are), the spectrum of $JJ^T$ is the **free multiplicative
# convolution** of the factors' spectra. Its tool is the **S-transform**: with the moment series
# $\psi(z) = \sum_k m_k z^k$ and $\chi$ the inverse of $\psi$,
#
# $$S(w) = \frac{1 + w}{w}\,\chi(w), \qquad S_{J_2 J_1}(w) = S_{J_2}(w)\,S_{J_1}(w).$$
#
# Expanding $S(w) = \frac{1}{m_1}\big(1 - \frac{\varphi}{m_1^2} w + \dots\big)$ gives the rule the
# paper builds on: **first moments multiply, normalized variances $\varphi/\phi^2$ add**.

# %%
w = sp.Symbol("w")
relu_S = iso.ReLU().moments(order=3).s_transform(w)
layer_S = iso.Linear(8, 8, gain=g).moments(order=3).s_transform(w)
relu_S, layer_S   # truncated series in w

# %%
L = sp.Symbol("L", positive=True, integer=True)
block = iso.Serial([iso.Linear(256, 256, gain=g), iso.ReLU()])
chain = iso.repeat(block, L).moments()
chain.m1, sp.simplify(chain.normalized_variance)    # (g²/2)^L and 2L: variance grows with depth

# %% [markdown]
# Parallel branches add: a residual block $y = x + \alpha F(x)$ has $J = I + \alpha J_F$.
# For free terms the **R-transform** (the free analogue of the cumulant generating function)
# adds, and moments convert to and from **free cumulants** through non-crossing partitions:

# %%
moments = iso.marchenko_pastur_moments(5)      # Catalan numbers
cumulants = iso.moments_to_cumulants(moments)     # free Poisson: every free cumulant is 1
cumulants, iso.cumulants_to_moments(cumulants) == moments

# %%
alpha = sp.Symbol("alpha", positive=True)
res = iso.Residual(iso.Serial([iso.Linear(256, 256, gain=sp.sqrt(2)), iso.ReLU()]), scale=alpha).moments()
sp.simplify(res.m1), sp.simplify(res.variance)

# %% [markdown]
# ## 4. Full spectra
#
# Moments are cheap; the whole eigenvalue density of $JJ^T$ follows from solving the transform
# equations numerically (`spectral_density`). Below: a 4-block tanh network with orthogonal
# weights, against the eigenvalues of sampled real networks.

# %%
design = iso.NetworkDesign("mlp", width=WIDTH, depth=4, init="orthogonal", gain=1.0, activation="tanh")
x, density = iso.spectral_density(iso.design_block(design), num=300)
eig = iso.sample_spectrum(design, samples=SAMPLES, seed=0).ravel()
# The density of λ peaks sharply near 0 and flattens the histogram on a linear axis; on a
# log₁₀ λ axis (density of log₁₀ λ = λ ln 10 · p(λ)) both the bulk and the tail show.
pos = eig[eig > 0]
curve = (x > 0) & (density > 0)
fig = go.Figure()
fig.add_histogram(x=np.log10(pos), histnorm="probability density", nbinsx=60,
                  name="sampled networks", marker_color="rgba(31,119,180,0.4)")
fig.add_scatter(x=np.log10(x[curve]), y=x[curve] * np.log(10) * density[curve],
                name="free probability", line_color="#d62728")
fig.update_layout(xaxis_title="log₁₀ λ (eigenvalue of JJᵀ)", yaxis_title="density of log₁₀ λ",
                  height=360)
fig

# %% [markdown]
# ## 5. The classic results
#
# **Gaussian vs orthogonal.** Linear networks: Gaussian layers add normalized variance 1 per
# layer, orthogonal layers add none. **ReLU vs tanh.** With Kaiming init ReLU keeps $\phi = 1$
# exactly but adds variance 2 per block; tanh with orthogonal weights is close to isometric
# while $q$ is small, but its $\phi$ decays with depth. **Residual scaling.** A residual block
# $x + \alpha F(x)$ multiplies $\phi$ by $1 + \alpha^2\phi_F$: with $\alpha = 1$ the gain grows
# exponentially in depth, with $\alpha \sim 1/\sqrt L$ it stays bounded.

# %%
DEPTH = 32
designs = {
    "linear, Gaussian": dict(activation="linear", init="gaussian", gain=1.0),
    "linear, orthogonal": dict(activation="linear", init="orthogonal", gain=1.0),
    "ReLU, Kaiming": dict(activation="relu", gain=2**0.5),
    "tanh, orthogonal": dict(activation="tanh", init="orthogonal", gain=1.0),
    "residual ReLU, α = 1": dict(architecture="residual", gain=2**0.5, residual_scale=1.0),
    "residual ReLU, α = 1/√L": dict(architecture="residual", gain=2**0.5, residual_scale=DEPTH**-0.5),
}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]  # one per design
fig = make_subplots(rows=1, cols=2, subplot_titles=("end-to-end φ(JJᵀ)", "end-to-end normalized variance"))
for (name, fields), color in zip(designs.items(), COLORS):
    p = iso.profile(iso.design_block(iso.NetworkDesign(width=WIDTH, depth=DEPTH, **fields)))
    fig.add_scatter(x=p.depth, y=p.cumulative_m1, name=name, legendgroup=name, line_color=color,
                    row=1, col=1)
    fig.add_scatter(x=p.depth, y=p.cumulative_normalized_variance + 1e-12, name=name,
                    legendgroup=name, showlegend=False, line_color=color, row=1, col=2)
fig.update_yaxes(type="log")
fig.update_xaxes(title_text="depth")
fig.update_layout(height=420)
fig

# %% [markdown]
# Are these predictions right for finite networks? Sample a few and measure every block
# with Hutchinson estimators (crosses, ± one standard error). `progress` takes any
# `progress(done, total)` callable; `toolkit.widgets.ProgressBar` is one that stays on the page
# (it is still there when the notebook is reopened).

# %%
design = iso.NetworkDesign("mlp", width=WIDTH, depth=6 if QUICK else 12, gain=2**0.5)
bar = toolkit.widgets.ProgressBar("networks")
display(bar)
measured = iso.sample_block_moments(design, samples=SAMPLES, seed=1, progress=bar)
predicted = iso.profile(iso.design_block(design))
fig = go.Figure()
fig.add_scatter(x=predicted.depth, y=predicted.cumulative_variance, name="predicted variance")
fig.add_scatter(x=predicted.depth, y=measured.total_variance, mode="markers", name="measured variance",
                error_y=dict(type="data", array=measured.total_variance_stderr))
fig.add_scatter(x=predicted.depth, y=predicted.cumulative_m1, name="predicted φ")
fig.add_scatter(x=predicted.depth, y=measured.total_m1, mode="markers", name="measured φ",
                error_y=dict(type="data", array=measured.total_m1_stderr))
fig.update_layout(xaxis_title="depth", height=380, title="Kaiming ReLU MLP: prediction vs measurement")
fig

# %% [markdown]
# ## 6. Real torch models
#
# `empirical(module, x)` estimates $\phi(JJ^T)$ and $\phi((JJ^T)^2)$ of any `torch.nn.Module` at
# an input, with Hutchinson probes through `torch.func` (standard errors included).
# `analyze(module, x)` splits a model into its blocks, measures each one at the input it actually
# receives, and predicts the blocks it recognises.

# %%
model = torch.nn.Sequential(
    torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(),
    torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh(),
    torch.nn.Linear(WIDTH, 10),
)
x = torch.randn(32, WIDTH)
print(iso.empirical(model, x, probes=16, seed=0))
table = iso.analyze(model, x, probes=16, seed=0)
table

# %%
table.plot()

# %% [markdown]
# ## 7. The explorer
#
# Change the architecture, depth, width, initialisation, gain, activation and normalization:
# the analytic curves and the spectrum follow at once, and the closed form as soon as sympy has
# derived it (up to seconds for a new design, in the background). **Run Monte Carlo**
# samples real networks of the design (on the GPU when there is one) and overlays them.

# %%
explorer = iso_explorer = toolkit.widgets.IsometryExplorer(depth=8, width=WIDTH)
explorer

# %% [markdown]
# ## 8. The paper's applications
#
# **Depth-aware SeLU.** Choose $(\lambda, \alpha)$ so that every `Linear -> SeLU` block has
# $\phi = 1 + \epsilon$ and the second moment stays at its fixed point $q$. With $\epsilon \approx
# 0.0716$ it recovers Klambauer et al.'s self-normalizing constants; a smaller $\epsilon$ for a
# deeper network keeps the end-to-end $\phi = (1+\epsilon)^L$ in check.

# %%
for eps in (0.0716, 0.03, 0.01):
    lam, a = iso.selu_parameters(eps)
    block = iso.Serial([iso.Linear(WIDTH, WIDTH, gain=1.0), iso.SeLU(lam, a)])
    print(f"ε = {eps:<7} λ = {lam:.4f}  α = {a:.4f}   block φ = {float(block.moments().m1):.4f}"
          f"   q ↦ {float(block.propagate_q(1.0)):.4f}")

# %% [markdown]
# **Leaky-ReLU slope under orthogonal weights.** Orthogonal layers add no variance, a
# leaky ReLU of slope $a$ adds $((1-a^2)/(1+a^2))^2$: pick $a$ for a target end-to-end
# normalized variance at depth $L$.

# %%
choice = iso.leaky_relu_slope(depth=100, target_variance=1.0)
design = iso.NetworkDesign(width=WIDTH, depth=100, init="orthogonal", activation="leaky_relu",
                           slope=choice.slope, gain=choice.gain)
p = iso.profile(iso.design_block(design))
choice, p.cumulative_m1[-1], p.cumulative_normalized_variance[-1]

# %% [markdown]
# **Normalization.** Batch norm divides by $\sqrt{q - c}$, the per-unit standard deviation (a
# ReLU residual stream carries a mean, so $c > 0$), and second-moment normalization by
# $\sqrt q$; both cancel the layer's gain; scaled weight standardization does the same inside
# the weights. Their moments entries are `iso.BatchNorm`, `iso.SecondMomentNorm` and
# `iso.WeightStandardization`:

# %%
for block in (iso.Serial([iso.Linear(256, 256, gain=3.0), iso.BatchNorm()]),
              iso.Serial([iso.Linear(256, 256, gain=3.0), iso.SecondMomentNorm()]),
              iso.WeightStandardization(256, 256, gain=1.0)):
    m = block.moments(q=2.0)
    print(f"{block!r:70} φ = {float(m.m1):.4f}")

# %% [markdown]
# ## 9. Exercises
#
# 1. Using `iso.repeat` with a symbolic depth, derive the end-to-end normalized variance of a
#    Gaussian linear network. At which depth does it reach 10?
# 2. For a residual ReLU network of depth $L$, find the scale $\alpha(L)$ that keeps the
#    end-to-end $\phi \le 2$. Check your answer with `iso.profile`, then with
#    `iso.sample_block_moments`.
# 3. Put a `Dropout(0.1)` after every ReLU. How do $\phi$ and the variance change? Verify on a
#    real `torch.nn.Sequential` with `iso.analyze` (mind training mode).
# 4. Compare the spectra of 8 Gaussian layers and of 8 orthogonal layers followed by tanh. Which
#    one would you train at depth 100, and why?
# 5. Why does `repeat(Serial([Linear(n, n, gain=g), Tanh()]), L)` refuse a symbolic `L`? (Hint:
#    follow $q$.)
