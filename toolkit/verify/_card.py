"""How `toolkit.verify` plugs into the toolkit (see :mod:`toolkit._modules`)."""

from .._modules import ModuleCard

CARD = ModuleCard(
    name="verify",
    title="Certified robustness bounds",
    summary=(
        "certified bounds for transformers (IBP, CROWN, forward, backward-forward, "
        "alpha-CROWN; CPU or GPU)"
    ),
    order=30,
    section="toolkit.verify.report",
    explorer="BoundsExplorer",
    explorer_module="toolkit.widgets.verify",
    notebook="03_verification_bounds",
)
