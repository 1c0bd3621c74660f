"""How `toolkit.metric` plugs into the toolkit (see :mod:`toolkit._modules`)."""

from .._modules import ModuleCard

CARD = ModuleCard(
    name="metric",
    title="Hardness-aware deep metric learning",
    summary=(
        "hardness-aware deep metric learning (HDML): synthetic negatives, generator, "
        "Recall@K / NMI / MAP@R"
    ),
    order=50,
    section="toolkit.metric.report",
    explorer="MetricLearningExplorer",
    explorer_module="toolkit.widgets.metric",
    notebook="05_hardness_aware_metric_learning",
)
