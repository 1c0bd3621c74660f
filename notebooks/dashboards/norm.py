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
# # Batch-norm sampling
#
# `NormSamplingExplorer` as a standalone dashboard: `voila notebooks/dashboards/norm.ipynb`
# (install with `pip install -e ".[voila]"`).  The ideas, the math and the paper's result are
# in the notebook `06_batch_norm_sampling.ipynb`.

# %%
from toolkit.widgets import NormSamplingExplorer

NormSamplingExplorer()
