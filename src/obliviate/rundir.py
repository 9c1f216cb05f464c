"""Run directories: what obliviate writes, it marks, locks and writes atomically.

    with run_dir("runs/npo", "models/target", overwrite=False) as out:   # claim + lock
        write_json(out / "summary.json", summary)

- `claim(out, *inputs)` refuses an input model's own directory, a path that is not a writable
  directory, and a non-empty directory obliviate did not create (it has no `.obliviate` marker),
  *before* any work. The marker lists the top-level entries obliviate wrote, so `--overwrite`
  replaces only those (`remove_ours`), never a file the user put there.
- `lock(out)` holds `.obliviate.lock` (the owner's pid) for the run: a second run on the same
  directory is refused with one line; a lock left by a dead process is taken over.
- `write_json(path, obj)` is the one atomic JSON write (temporary file + `os.replace`) and `atomic_dir(path)`
  the one atomic directory write (fill `<path>.partial`, then rename): a killed run never leaves a
  half-written file or directory under its final name. Run-or-reuse of stages on top of them: `stagecache`.
- `seed_everything(seed)` seeds Python, NumPy and torch (every stage calls it first).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from obliviate import ObliviateError
from obliviate.reader import read_json

MARKER = ".obliviate"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
LOCK = ".obliviate.lock"
_OWN = {MARKER, LOCK}


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (a reader sees the old file or the new one, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, ensure_ascii: bool = True) -> Path:
    """Write `obj` as JSON to `path` atomically (`write_text`)."""
    return write_text(path, json.dumps(obj, indent=indent, default=_json_default, ensure_ascii=ensure_ascii) + "\n")


def write_json_lines(path: str | Path, rows: list) -> Path:
    """Write `rows` as JSON Lines (one object per line) to `path` atomically (`write_text`)."""
    return write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh `<final>.partial` directory to fill; when the block succeeds it replaces `final`.

    A killed run leaves only the `.partial` directory (never a half-written `final`); the next run starts it over."""
    final = Path(final)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and torch."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _marker(out: Path) -> dict | None:
    if not (out / MARKER).is_file():
        return None
    try:
        marker = read_json(out / MARKER)
    except ObliviateError:  # broken: ours, but nothing it lists is trusted
        return {"written": []}
    return marker if isinstance(marker, dict) else {"written": []}


def is_ours(out: str | Path) -> bool:
    return _marker(Path(out)) is not None


def claim(out: str | Path, *inputs: str | Path | None, what: str = "--out") -> Path:
    """Make `out` an obliviate run directory, or refuse with one line (see the module docstring)."""
    out = Path(out)
    for inp in inputs:
        if inp is not None and Path(inp).exists() and out.resolve() == Path(inp).resolve():
            raise ObliviateError(f"{out}: {what} is the input model's directory; choose another {what}")
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ObliviateError(f"{out}: {what} cannot be created, {parent} is a file, not a directory")
            break
    if out.is_dir() and _marker(out) is None and any(out.iterdir()):
        raise ObliviateError(f"{out}: {what} is a non-empty directory obliviate did not create (no {MARKER} "
                             "marker); choose a new or empty directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if _marker(out) is None:
            write_json(out / MARKER, {"written": []})
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ObliviateError(f"{out}: {what} is not writable ({e.strerror or e})") from None
    return out


def _entries(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.name not in _OWN and not p.name.startswith((".write-test.", ".tmp"))}


def record_written(out: str | Path, names: list[str] | None = None) -> None:
    """Add `names` (default: every top-level entry now in `out`) to the marker's list of what obliviate wrote."""
    out = Path(out)
    info = _marker(out) or {"written": []}
    now = names if names is not None else sorted(_entries(out))
    info["written"] = sorted(set(info.get("written", [])) | set(now))
    write_json(out / MARKER, info)


def remove_ours(out: str | Path, names: list[str] | tuple[str, ...]) -> list[str]:
    """Delete those of `names` in `out` that obliviate wrote (per the marker); return what was removed."""
    out = Path(out)
    written = set((_marker(out) or {}).get("written", []))
    removed = []
    for name in names:
        p = out / name
        if name in written and (p.exists() or p.is_symlink()):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def lock(out: str | Path) -> Iterator[Path]:
    """Hold `<out>/.obliviate.lock` while the block runs; refuse if a live process holds it."""
    out = Path(out)
    path = out / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise ObliviateError(f"{out}: another obliviate run (pid {pid}) is using this directory; wait for "
                                     f"it or choose another --out") from None
            if pid == os.getpid():  # re-entrant within one process
                yield out
                return
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise ObliviateError(f"{out}: could not take the run lock {path}")
    try:
        yield out
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def run_dir(out: str | Path, *inputs: str | Path | None, what: str = "--out") -> Iterator[Path]:
    """`claim` + `lock`; on leaving (also on error) record what the run wrote in the marker."""
    out = claim(out, *inputs, what=what)
    with lock(out):
        before = _entries(out)
        try:
            yield out
        finally:
            with contextlib.suppress(OSError):
                record_written(out, sorted(_entries(out) - before))
