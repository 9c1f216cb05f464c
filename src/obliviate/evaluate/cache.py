"""Evaluation's stage cache and result files: every evaluation stage's raw output (forward scores, generations, ...)
is a JSON file under `<out>/cache/<fingerprint>/` named by (split, stage, digest of its key: parameters and
records); eval.json is written atomically (`rundir.write_json`). Reuse and torn files follow the one stage
mechanism, `obliviate.stagecache` (`cached`).

    cache = EvalCache(out / "cache", fingerprint)
    items = cache.get_or_compute("forget10", "forward-forget", key, lambda: ...)
    gens = cache.get("forget10", "generate", key)       # None when absent or torn; then compute and
    cache.put("forget10", "generate", key, gens)         # store (several stages computed in one pass)
    results = load_results("runs/target/eval")     # eval.json, or the directory holding it
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obliviate import ObliviateError
from obliviate.reader import read_json
from obliviate.rundir import write_json
from obliviate.stagecache import cached, digest, read_whole

CACHE_VERSION = 2  # 2: generations carry refusal_rate


class EvalCache:
    """JSON files under `<root>/<fingerprint>/`, one per (split, stage, key); root None = no cache."""

    def __init__(self, root: Path | None, fingerprint: str, *, write: bool = True):
        self.dir = root / fingerprint if root is not None else None
        self.write = write  # False on the other processes of `accelerate launch`: they read, the main one writes

    def _path(self, split: str, stage: str, key: Any) -> Path | None:
        if self.dir is None:
            return None
        return self.dir / f"{split.replace('/', '__')}.{stage}.{digest([CACHE_VERSION, key])[:16]}.json"

    def get_or_compute(self, split: str, stage: str, key: Any, compute):
        path = self._path(split, stage, key)
        if not self.write and path is not None:
            value = read_whole(path)
            return value if value is not None else compute()
        return cached(path, compute)

    def get(self, split: str, stage: str, key: Any) -> Any | None:
        """The stored value of (split, stage, key), or None (no cache, absent, or not whole JSON)."""
        path = self._path(split, stage, key)
        return read_whole(path) if path is not None else None

    def put(self, split: str, stage: str, key: Any, value: Any) -> None:
        """Store a value computed outside `get_or_compute` (only the process that writes; atomically)."""
        path = self._path(split, stage, key)
        if path is not None and self.write:
            write_json(path, value, indent=1)


def load_results(path: str | Path) -> dict:
    """A saved eval.json (or the directory holding it)."""
    p = Path(path)
    p = p / "eval.json" if p.is_dir() else p
    if not p.exists():
        raise ObliviateError(f"{p}: no such eval.json")
    data = read_json(p)
    if not isinstance(data, dict) or "splits" not in data:
        raise ObliviateError(f"{p}: not an obliviate eval.json (no 'splits')")
    return data


def as_results(value: dict | str | Path | None) -> dict | None:
    return value if value is None or isinstance(value, dict) else load_results(value)
