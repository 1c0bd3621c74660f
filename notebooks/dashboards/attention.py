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
# # Attention sparsity: N:M pruning and DSA
#
# `AttentionSparsityExplorer` as a standalone dashboard: `voila notebooks/dashboards/attention.ipynb`
# (install with `pip install -e ".[voila]"`).  The ideas, the math and the paper's result are
# in the notebook `02_attention_sparsity.ipynb`.

# %%
from toolkit.widgets import AttentionSparsityExplorer

AttentionSparsityExplorer()
