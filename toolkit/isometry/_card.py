"""How `toolkit.isometry` plugs into the toolkit (see :mod:`toolkit._modules`)."""

from .._modules import ModuleCard

CARD = ModuleCard(
    name="isometry",
    title="Block dynamical isometry",
    summary="block dynamical isometry: Jacobian moments through free probability",
    order=10,
    section="toolkit.isometry.report",
    explorer="IsometryExplorer",
    explorer_module="toolkit.widgets.isometry",
    notebook="01_block_dynamical_isometry",
)
