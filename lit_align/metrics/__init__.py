"""lit_align.metrics: torchmetrics objects with TRL's metric names."""
from lit_align.metrics.preference import PreferenceMetrics

__all__ = ["PreferenceMetrics"]
