r"""The measurement side: Jacobian moments of real ``torch.nn`` networks, and their twins.

:mod:`.network` (:class:`~.network.NetworkDesign`, the family of random networks, and the one
map from its fields to layers), :mod:`.empirical` (Hutchinson estimates on any module),
:mod:`.sampling` (Monte Carlo over random networks), :mod:`.designs` (a design's analytic
twin and closed forms) and :mod:`.analyze` (predicted beside measured, block by block, in
the :mod:`.table` it returns).  It builds on :mod:`toolkit.isometry.engine`; the public
names are re-exported by :mod:`toolkit.isometry`.
"""

from .analyze import analyze, predict_block
from .designs import Formula, design_block, design_formula
from .empirical import EmpiricalMoments, empirical
from .network import NetworkDesign, ResidualBlock
from .sampling import (
    BlockMoments,
    build_network,
    sample_block_moments,
    sample_input,
    sample_spectrum,
)
from .table import AnalysisRow, AnalysisTable

__all__ = [
    "AnalysisRow",
    "AnalysisTable",
    "BlockMoments",
    "EmpiricalMoments",
    "Formula",
    "NetworkDesign",
    "ResidualBlock",
    "analyze",
    "build_network",
    "design_block",
    "design_formula",
    "empirical",
    "predict_block",
    "sample_block_moments",
    "sample_input",
    "sample_spectrum",
]
