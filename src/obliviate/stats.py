"""Across-seed statistics, one place for every report (the card, steal/invert summaries).

    mean_ci([0.1, 0.2, 0.3])        # (0.2, 0.248...): mean and 95 % t-interval half-width
    median_range([1e-3, 0.5, 0.9])  # (0.5, 1e-3, 0.9): for p-values, whose mean ± t-interval can leave [0, 1]
    across_seeds("forget Prob", [0.2, 0.4])   # '0.300 ± 1.27': one table cell (report card, attack tables)
    check_finite_weights(model.named_parameters(), what="finetune step 3")  # after every optimiser step
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


# p-value columns: summarised across seeds by median [min–max] (a mean ± t-interval can leave [0, 1])
P_VALUE_COLUMNS = ("Forget Quality",)


def fmt_ci(m: float | None, h: float | None) -> str:
    """'m ± h' (or 'm' without a half-width, '—' without a value), numbers as `html.fmt` writes them."""
    from obliviate.html import fmt

    if m is None:
        return "—"
    return fmt(m) if h is None else f"{fmt(m)} ± {fmt(h)}"


def fmt_median_range(values: list[float | None]) -> str:
    from obliviate.html import fmt

    med, lo, hi = median_range(values)
    if med is None:
        return "—"
    return fmt(med) if lo == hi else f"{fmt(med)} [{fmt(lo)}–{fmt(hi)}]"


def across_seeds(label: str, values) -> str:
    """One table cell over seeds: median [min–max] for p-value columns (`P_VALUE_COLUMNS`), else mean ± 95 % CI."""
    values = list(values)
    return fmt_median_range(values) if label in P_VALUE_COLUMNS else fmt_ci(*mean_ci(values))


def check_finite_weights(params, *, what: str) -> None:
    """A one-line ObliviateError when any of `params` ((name, tensor) pairs, or tensors) holds a NaN or ±inf: every
    training verb calls it after each optimiser step, so non-finite weights stop the run before anything is saved.
    One fused norm over all tensors (torch.nn.utils.get_total_norm); the offender is looked up only on failure."""
    import torch

    params = list(params)
    named = params if params and isinstance(params[0], tuple) else list(enumerate(params))
    with torch.no_grad():
        if math.isfinite(float(torch.nn.utils.get_total_norm([p.detach() for _, p in named], foreach=True))):
            return
        bad = next((n for n, p in named if not bool(torch.isfinite(p).all())), None)
    if bad is None:  # finite weights whose norm overflows float32 (|w| > 1e19): not this check's business
        return
    from obliviate import ObliviateError

    raise ObliviateError(f"{what}: weight {bad} is not finite (NaN or inf) after the optimiser step; nothing was "
                         "saved; lower lr, set grad_clip, check weight_decay")
