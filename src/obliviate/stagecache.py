"""Run or reuse: the one stage / resume mechanism of obliviate.

A *stage* is a unit of work whose output is stored with the *key* that produced it: a JSON-able dict (or list) of
its inputs, parameters and, where the code may change, `code_hash(...)` of the sub-packages it runs. A stored
output is reused only when it is whole and its key equals the one asked for; anything else is recomputed (or,
for a resumable run with other settings, refused). Three forms, one rule:

    Stages(out).run(out / "models/target", key, fn)    # a directory stage: fn(tmp) fills <path>.partial, then
                                                         # <path>/stage.json = {key, seconds} marks it finished
    record = load_stage(out / "probes.json", key)        # a JSON record {key, ...} (None: absent, torn, other key)
    value = cached(cache_dir / f"x.{digest(key)}.json", compute)   # a value file named by its key's digest

Writes go through `rundir` only (`write_json`, `atomic_dir`): a killed run leaves either the old file / no
directory, or a `.partial` directory that the next run discards, never a half-written stage under its final
name. A file that is not whole JSON anyway (a copy cut short, a full disk) is treated as absent.

Users: the demo / reproduce pipeline (`pipeline/stages.py`, directory stages), evaluation's cache
(`evaluate/cache.py`, value files), continual unlearning (`scenarios/continual.py`, a record resumed task by
task) and real-world probing (`scenarios/realworld.py`, a record). It lives at the base of the package, beside
`rundir`, because `evaluate` and `scenarios` sit below `pipeline` and may not import it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from obliviate import ObliviateError
from obliviate.reader import read_json
from obliviate.rundir import _json_default, atomic_dir, write_json

PACKAGE_ROOT = Path(__file__).parent  # the installed obliviate package (a wheel's site-packages copy, or src/)
STAGE_FILE = "stage.json"


def code_hash(*packages: str, root: Path = PACKAGE_ROOT) -> str:
    """Hash of the source of obliviate sub-packages / modules ("data", "attack/relearn"): a stage's key changes
    when the code it runs does. Reads the package's own files, so it is the same from a checkout or a wheel."""
    h = hashlib.sha256()
    for pkg in packages:
        p = root / pkg
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p.with_suffix(".py")]
        for f in files:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def digest(key: Any) -> str:
    """sha256 of a key's canonical JSON (sorted keys; str() of anything JSON has no type for)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _canonical(key: Any) -> Any:
    """The key as it reads back from a stage file (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(key, default=_json_default))


def read_whole(path: Path) -> Any | None:
    """The JSON at `path`, or None when it is absent or not whole JSON (never trusted, recomputed)."""
    if not Path(path).is_file():
        return None
    try:
        return read_json(path)
    except ObliviateError:  # truncated, not JSON, unreadable
        return None


def stage_done(path: str | Path) -> bool:
    """`path` is a stage directory marked complete: its stage.json (written last, `Stages`) is whole."""
    info = read_whole(Path(path) / STAGE_FILE)
    return isinstance(info, dict) and "key" in info


def first_difference(old: Any, new: Any) -> str | None:
    """The first top-level field in which two keys differ ("key" when they are not both dicts), or None."""
    old, new = _canonical(old), _canonical(new)
    if old == new:
        return None
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return "key"
    return next((k for k in [*new, *old] if old.get(k) != new.get(k)), "key")


def load_stage(path: str | Path, key: Any, *, key_field: str = "key", refuse: str | None = None) -> dict | None:
    """The record (a JSON object) at `path` when it is whole and its `key_field` equals `key`, else None.

    refuse: a record under another key is an error, not a miss: `ObliviateError(f"{path}: " + refuse.format(field))`
    with the first differing field (a resumable run whose finished part would be mixed with other settings)."""
    record = read_whole(Path(path))
    if not isinstance(record, dict) or key_field not in record:
        return None
    diff = first_difference(record[key_field], key)
    if diff is None:
        return record
    if refuse is not None:
        raise ObliviateError(f"{path}: " + refuse.format(diff))
    return None


def save_stage(path: str | Path, key: Any, *, key_field: str = "key", indent: int | None = 1, **fields) -> Path:
    """Write the record {key_field: key, **fields} atomically (`rundir.write_json`)."""
    return write_json(path, {key_field: key, **fields}, indent=indent)


def cached(path: str | Path | None, compute: Callable[[], Any]) -> Any:
    """A value file named by its key (`digest`): reuse it when whole, else `compute()` and store it (None: no store)."""
    if path is not None:
        value = read_whole(Path(path))
        if value is not None:
            return value
    value = compute()
    if path is not None:
        write_json(path, value, indent=1)
    return value


class Stages:
    """Directory stages of one run directory `out`: `<stage>/stage.json` = {key, seconds}, written last.

    `timings` collects {stage path relative to out: {seconds, reused}} for the run's record."""

    def __init__(self, out: Path):
        self.out, self.timings = Path(out), {}

    def done(self, path: Path, key: dict) -> bool:
        info = load_stage(path / STAGE_FILE, key)
        if info is None or not isinstance(info.get("seconds"), (int, float)):
            return False
        self.timings[str(path.relative_to(self.out))] = {"seconds": info["seconds"], "reused": True}
        return True

    def run(self, path: Path, key: dict, fn: Callable[[Path], Any]) -> None:
        """Run `fn(tmp_dir)` into a fresh `<path>.partial` directory, then move it to `path` (atomic on finish)."""
        if self.done(path, key):
            return
        with atomic_dir(path) as tmp:
            t0 = time.perf_counter()
            fn(tmp)
            seconds = time.perf_counter() - t0
            save_stage(tmp / STAGE_FILE, key, seconds=seconds)
        self.timings[str(path.relative_to(self.out))] = {"seconds": seconds, "reused": False}
