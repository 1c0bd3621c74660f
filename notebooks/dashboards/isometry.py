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
# # Block dynamical isometry
#
# `IsometryExplorer` as a standalone dashboard: `voila notebooks/dashboards/isometry.ipynb`
# (install with `pip install -e ".[voila]"`).  The ideas, the math and the paper's result are
# in the notebook `01_block_dynamical_isometry.ipynb`.

# %%
from toolkit.widgets import IsometryExplorer

IsometryExplorer()
