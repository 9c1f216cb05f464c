"""Evaluation: TOFU, Closer-Look, MIA, MUSE and MCQ metrics; `evaluate(...)` writes eval.json (layout in suite.py)."""

from obliviate.evaluate.config import EvalConfig
from obliviate.evaluate.metrics import METRICS, Metric
from obliviate.evaluate.suite import aggregate, evaluate, load_results

__all__ = ["EvalConfig", "METRICS", "Metric", "aggregate", "evaluate", "load_results"]
