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
# # A tour of toolkit
#
# **toolkit** analyses the design of deep networks and shows the analysis. Each research result
# is a module with an explorer widget, a notebook and a section of the offline report:
#
# | module | question it answers | notebook |
# | --- | --- | --- |
# | `toolkit.isometry` | Do gradient norms stay equal across the blocks of my network? (block dynamical isometry, free probability) | [01_block_dynamical_isometry](01_block_dynamical_isometry.ipynb) |
# | `toolkit.attention` | How much attention can I prune to N:M or predict away, and what does it cost? | [02_attention_sparsity](02_attention_sparsity.ipynb) |
# | `toolkit.verify` | How large a perturbation of a word embedding provably cannot flip the prediction? | [03_verification_bounds](03_verification_bounds.ipynb) |
# | `toolkit.snn` | Where does training a spiking network by BPTT spend its time, and how much does its sparsity save? | [04_snn_bptt](04_snn_bptt.ipynb) |
# | `toolkit.metric` | Do synthetic hard negatives make a metric embedding generalise to unseen classes? | [05_hardness_aware_metric_learning](05_hardness_aware_metric_learning.ipynb) |
# | `toolkit.norm` | How few activations can batch norm estimate its statistics from? | [06_batch_norm_sampling](06_batch_norm_sampling.ipynb) |
#
# This notebook first walks through the six explorers, one per module, then shows the
# machinery they share: the backend that chooses between a **torch reference path** and a
# **CUDA path**, and the first kernel at work.

# %%
import time

import numpy as np
import plotly.graph_objects as go
import torch

import toolkit
from toolkit.attention import nm_mask
from toolkit.report import Table
from toolkit.report.environment import environment_rows

QUICK = toolkit.quick_mode()  # TOOLKIT_QUICK=1 shrinks every size (the tests run in quick mode)
print("toolkit", toolkit.__version__, "| GPU path available:", toolkit.gpu_available())

# %% [markdown]
# ## A guided tour of the explorers
#
# Each explorer is a live figure: move a control and the plots follow (long work sits behind a
# **Run** button with a progress bar and **Cancel**). Every one of them is explained at length
# in its notebook; here each gets one reason why it matters.
#
# ### 1. Block dynamical isometry — [notebook 01](01_block_dynamical_isometry.ipynb)
#
# **Why it matters:** whether a deep network trains at all is decided at initialisation, by
# whether $\phi(JJ^T)$ stays near 1 and its variance stays small across the blocks; the
# explorer predicts both for any design in closed form before you train anything.

# %%
toolkit.widgets.IsometryExplorer(depth=8, width=64)

# %% [markdown]
# ### 2. Attention sparsity — [notebook 02](02_attention_sparsity.ipynb)
#
# **Why it matters:** attention's cost grows with the square of the sequence length; the
# explorer shows, head by head on a real sentence, how much of it N:M pruning or DSA's
# prediction can drop and what error that costs.

# %%
toolkit.widgets.AttentionSparsityExplorer()

# %% [markdown]
# ### 3. Certified robustness bounds — [notebook 03](03_verification_bounds.ipynb)
#
# **Why it matters:** a test set says how a model behaves on the inputs you tried; a certified
# bound *proves* that no perturbation within ε of a word embedding flips the prediction, and
# the explorer shows how tight each method's proof is.

# %%
toolkit.widgets.BoundsExplorer()

# %% [markdown]
# ### 4. Spiking networks by BPTT — [notebook 04](04_snn_bptt.ipynb)
#
# **Why it matters:** spiking networks are cheap only if their sparsity is used; the explorer
# shows the neuron dynamics and surrogate gradient, and (after **Train**) how much of the
# forward and backward pass an accelerator can skip.

# %%
toolkit.widgets.SNNExplorer(epochs=1, hidden=32 if QUICK else 128)

# %% [markdown]
# ### 5. Hardness-aware metric learning — [notebook 05](05_hardness_aware_metric_learning.ipynb)
#
# **Why it matters:** retrieval of classes never seen in training depends on learning from
# hard negatives; the explorer moves HDML's synthetic negative along its path as the hardness
# changes, on embeddings of unseen digits (a short training run here; the notebook trains
# longer and over several seeds).

# %%
from toolkit.metric import compare_on_digits

toolkit.widgets.MetricLearningExplorer(
    compare_on_digits(seeds=(0,), steps=30 if QUICK else 300, progress=False)
)

# %% [markdown]
# ### 6. Batch normalization with sampled statistics — [notebook 06](06_batch_norm_sampling.ipynb)
#
# **Why it matters:** batch norm's statistics cost a pass over all activations; estimating
# them from a sample is only safe when the sampled data are not correlated. Here on synthetic
# activations whose maps share a per-sample offset (so neighbouring data are correlated);
# notebook 06 uses the activations of a trained CNN.

# %%
gen = torch.Generator().manual_seed(0)
shared = torch.randn(128, 4, 1, 1, generator=gen) * np.sqrt(0.6)
acts = shared + torch.randn(128, 4, 8, 8, generator=gen) * np.sqrt(0.4)
toolkit.widgets.NormSamplingExplorer(acts, batch_size=64, trials=8)

# %% [markdown]
# ## The backend
#
# Every operation exists as a torch reference path, which runs anywhere and *defines* what the
# operation computes. Where a GPU pays, the same operation also has a CUDA path: a CuPy kernel
# compiled from `kernels/*.cu`. The input decides: a tensor on a CUDA device takes the CUDA path
# when CuPy is usable. You can force either path per call (`backend="cpu"`), per block
# (`with toolkit.use_backend("cpu"):`) or per process (`TOOLKIT_DEVICE=cpu`).

# %%
from IPython.display import HTML

HTML(Table(environment_rows(), caption="This machine").to_html())

# %% [markdown]
# ## The first kernel: N:M structured pruning
#
# DFSS prunes every row of an attention score matrix to an **N:M** pattern: in each group of $M$
# consecutive scores, only the $N$ largest survive. With 2:4 the surviving half fits the sparse
# tensor cores of recent GPUs. Formally, for scores $s_{i}$ in a group $G$,
#
# $$\text{keep}(i) \iff \#\{j \in G : s_j > s_i \ \text{or}\ (s_j = s_i,\ j < i)\} < \min(N, |G|),$$
#
# so ties go to the lower index and a short last group of $r < M$ entries keeps $\min(N, r)$.

# %%
gen = torch.Generator().manual_seed(0)
scores = torch.randn(8, 16, generator=gen)
mask = nm_mask(scores, n=2, m=4)

fig = go.Figure(go.Heatmap(z=scores.numpy(), colorscale="RdBu", zmid=0, colorbar=dict(title="score")))
rows, cols = torch.nonzero(mask, as_tuple=True)
fig.add_scatter(x=cols.numpy(), y=rows.numpy(), mode="markers", name="kept",
                marker=dict(symbol="square-open", size=18, color="black"))
for b in (3.5, 7.5, 11.5):
    fig.add_vline(x=b, line=dict(color="gray", dash="dot"))
fig.update_layout(title="2:4 pruning: each group of 4 keeps its 2 largest scores",
                  yaxis=dict(autorange="reversed"), height=380)
fig

# %% [markdown]
# Every group keeps exactly two entries, and every kept entry beats every pruned one in its
# group. The self-check below runs the kernel on fresh random inputs with many ties, on every path
# this machine has, and compares it with a plain Python loop.

# %%
from toolkit.attention._selfcheck import nm_mask_selfcheck

HTML(Table(nm_mask_selfcheck(seed=1), caption="nm_mask self-check").to_html())

# %% [markdown]
# ## Both paths, timed
#
# On a GPU machine the CUDA path runs the kernel; here we time whatever paths exist. (Benchmarks
# proper, with CUDA events and medians, live in `benchmarks/`; see `benchmarks/RESULTS.md`.)

# %%
size = (64, 4096) if QUICK else (1024, 65536)
x = torch.randn(size, generator=gen)
devices = ["cpu"] + (["cuda"] if toolkit.gpu_available() else [])
for device in devices:
    xd = x.to(device)
    nm_mask(xd, 2, 4)  # warm-up (compiles the kernel on first GPU use)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(5):
        nm_mask(xd, 2, 4)
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"{device}: {(time.perf_counter() - start) / 5 * 1e3:.2f} ms for {x.numel():,} scores")

# %% [markdown]
# ## The report
#
# `python -m toolkit report --out report.html` runs every module's section and writes one HTML
# file that opens offline, with the same figures as the explorers above.

# %%
from toolkit.report import all_sections

[(s.key, s.title) for s in all_sections()]

# %% [markdown]
# ## Exercises
#
# 1. Prune `scores` to 1:2 and to 8:32. What fraction survives? Which pattern keeps more of the
#    largest scores overall (compare with a global top-k at the same density)?
# 2. Build a row whose scores are all equal. Which entries survive, and why is a fixed tie rule
#    essential for a kernel and its reference to agree bit for bit?
# 3. Run this notebook with `TOOLKIT_DEVICE=cpu` on a GPU machine. What changes?
