"""Stage cache and result files: every stage's raw output is a JSON file under `<out>/cache/<fingerprint>/`
keyed by (split, stage, parameters, records); eval.json is written atomically.

    cache = StageCache(out / "cache", fingerprint)
    items = cache.get_or_compute("forget10", "forward-forget", key, lambda: ...)
    results = load_results("runs/target/eval")     # eval.json, or the directory holding it
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from obliviate import ObliviateError
from obliviate.rundir import write_json

CACHE_VERSION = 2  # 2: generations carry refusal_rate


class StageCache:
    """JSON files under `<root>/<fingerprint>/`, one per (split, stage, parameters, records)."""

    def __init__(self, root: Path | None, fingerprint: str):
        self.dir = root / fingerprint if root is not None else None

    def _path(self, split: str, stage: str, key: Any) -> Path | None:
        if self.dir is None:
            return None
        digest = hashlib.sha256(json.dumps([CACHE_VERSION, key], sort_keys=True, default=str).encode()).hexdigest()
        return self.dir / f"{split.replace('/', '__')}.{stage}.{digest[:16]}.json"

    def get_or_compute(self, split: str, stage: str, key: Any, compute):
        path = self._path(split, stage, key)
        if path is not None and path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # a torn write from a killed run: recompute
        value = compute()
        if path is not None:
            atomic_write(path, value)
        return value


def records_hash(records) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()[:16]


def atomic_write(path: Path, obj: Any) -> None:
    write_json(path, obj, indent=1)


def load_results(path: str | Path) -> dict:
    """A saved eval.json (or the directory holding it)."""
    p = Path(path)
    p = p / "eval.json" if p.is_dir() else p
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ObliviateError(f"{p}: no such eval.json") from None
    except json.JSONDecodeError as e:
        raise ObliviateError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or "splits" not in data:
        raise ObliviateError(f"{p}: not an obliviate eval.json (no 'splits')")
    return data


def as_results(value: dict | str | Path | None) -> dict | None:
    return value if value is None or isinstance(value, dict) else load_results(value)
