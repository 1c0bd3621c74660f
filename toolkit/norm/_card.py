"""How `toolkit.norm` plugs into the toolkit (see :mod:`toolkit._modules`)."""

from .._modules import ModuleCard

CARD = ModuleCard(
    name="norm",
    title="Batch normalization with sampled statistics",
    summary="batch-norm sampling (BS, FS), virtual dataset and second-moment normalization",
    order=60,
    section="toolkit.norm.report",
    explorer="NormSamplingExplorer",
    explorer_module="toolkit.widgets.norm",
    notebook="06_batch_norm_sampling",
)
