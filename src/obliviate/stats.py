"""Across-seed statistics, one place for every report (the card, steal/invert summaries).

    mean_ci([0.1, 0.2, 0.3])        # (0.2, 0.248...): mean and 95 % t-interval half-width
    median_range([1e-3, 0.5, 0.9])  # (0.5, 1e-3, 0.9): for p-values, whose mean ± t-interval can leave [0, 1]
"""

from __future__ import annotations

import math
import statistics


def mean_ci(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and the 95 % t-interval half-width (None for fewer than 2 values); None values are skipped."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None
    from scipy import stats

    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return m, stats.t.ppf(0.975, len(vals) - 1) * sd / math.sqrt(len(vals))


def median_range(values: list[float | None]) -> tuple[float | None, float | None, float | None]:
    """(median, min, max) of the non-None values, or (None, None, None): the summary used for p-values."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)
