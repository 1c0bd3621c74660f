"""How `toolkit.attention` plugs into the toolkit (see :mod:`toolkit._modules`)."""

from .._modules import ModuleCard

CARD = ModuleCard(
    name="attention",
    title="Attention sparsity",
    summary="DFSS N:M pruning and DSA predicted sparse attention",
    order=20,
    section="toolkit.attention.report",
    explorer="AttentionSparsityExplorer",
    explorer_module="toolkit.widgets.attention",
    notebook="02_attention_sparsity",
)
