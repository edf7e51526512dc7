"""How metric keys are shown to people: order, short labels and number formats.

The keys are the service's stable names (see ``ListPriorsResponse.metric_descriptions``
for their meaning); keys this table does not know are shown after these, under their own
name, so a newer server's metrics still appear.
"""

from __future__ import annotations

from collections.abc import Mapping

METRIC_LABELS: dict[str, str] = {
    "objective": "objective",
    "objective_transformed": "objective (transformed)",
    "robustness": "robustness",
    "held_out_probability": "held-out probability",
    "spectral_slope": "spectral slope",
    "high_frequency_energy": "high-frequency energy",
    "total_variation": "total variation",
    "bn_statistics_distance": "BN statistics distance",
    "diversity": "diversity",
}


def ordered_metrics(values: Mapping[str, float]) -> list[tuple[str, str, float]]:
    """``(key, label, value)`` in display order: known keys first, then the rest by name."""
    known = [(key, label, values[key]) for key, label in METRIC_LABELS.items() if key in values]
    extra = [(key, key.replace("_", " "), values[key]) for key in sorted(values) if key not in METRIC_LABELS]
    return known + extra


def format_metric(value: float) -> str:
    """Three significant digits, enough to compare and short enough for a contact sheet cell."""
    if value != value:
        return "nan"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return f"{value:.2e}"
