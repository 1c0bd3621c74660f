"""How `toolkit.snn` plugs into the toolkit (see :mod:`toolkit._modules`)."""

from .._modules import ModuleCard

CARD = ModuleCard(
    name="snn",
    title="Spiking networks trained by BPTT",
    summary="BPTT learning of spiking networks (fused LIF kernels), spike and gradient sparsity, "
    "LUT accumulation and an H2Learn-style cost model",
    order=40,
    section="toolkit.snn.report",
    explorer="SNNExplorer",
    explorer_module="toolkit.widgets.snn",
    notebook="04_snn_bptt",
)
