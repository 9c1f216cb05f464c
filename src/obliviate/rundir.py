"""Run directories: what obliviate writes, it marks, locks and writes atomically.

    with run_dir("runs/npo", "models/target", overwrite=False) as out:   # claim + lock
        write_json(out / "summary.json", summary)

- `claim(out, *inputs)` refuses an input model's own directory, a path that is not a writable
  directory, and a non-empty directory obliviate did not create (it has no `.obliviate` marker),
  *before* any work. The marker lists the top-level entries obliviate wrote, so `--overwrite`
  replaces only those (`remove_ours`), never a file the user put there.
- `lock(out)` holds `.obliviate.lock` for the run, an OS file lock (`filelock`: flock/fcntl, released by the
  kernel when the holder dies, so no stale lock and no pid-reuse guess; the file names the holder's pid): a
  second run on the same directory is refused with one line.
- `atomic_file(path)` is the one atomic file write (temporary name in the same directory, then `os.replace`;
  `write_text`/`write_json`/`write_json_lines` use it), `atomic_dir(path)` the one atomic directory write (fill
  `<path>.partial`, then rename) and `atomic_into(dir)` the atomic write of several files into a directory (a
  model save). A killed run never leaves a half-written file or directory under its final name; modes follow the
  umask (libraries that write through `mkstemp`, e.g. safetensors, leave 0600: fixed on commit).
- `run_dir(out)` = claim + lock; a full disk (ENOSPC/EDQUOT) anywhere in the block is one line naming the path and
  the free space (`DiskFull`); a run that fails before writing anything leaves no trace (the directory it created
  is removed, a user's empty directory loses only the marker). Run-or-reuse of stages on top of it: `stagecache`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from obliviate import ObliviateError
from obliviate.progress import close_progress_bars, is_main_rank, library_bars_off, progress_bar
from obliviate.reader import read_json

# the progress helpers live in obliviate.progress; importing them from here (their first home) keeps working
__all__ = ["DiskFull", "LOCK", "MARKER", "atomic_dir", "atomic_file", "atomic_into", "claim", "close_progress_bars",
           "disk_full", "disk_full_errors", "is_main_rank", "is_ours", "library_bars_off", "lock", "progress_bar",
           "public_mode", "record_written", "remove_entry", "remove_ours", "run_dir", "write_bytes", "write_json",
           "write_json_lines", "write_text"]

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


class DiskFull(ObliviateError):
    """A write failed for lack of space (ENOSPC) or quota (EDQUOT): one line naming the path and the free space."""


def _free_bytes(where: Path) -> int | None:
    probe = next((p for p in [where, *where.parents] if p.exists()), Path("."))
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _full_errno(e: BaseException, where: Path) -> int | None:
    """ENOSPC/EDQUOT if `e` is a full disk: an OSError's errno, or the text of libraries that wrap it (safetensors:
    "No space left on device (os error 28)"; torch.save: an inline_container enforce failure while space is low)."""
    if isinstance(e, OSError):
        return e.errno if e.errno in (errno.ENOSPC, errno.EDQUOT) else None
    if not isinstance(e, Exception) or isinstance(e, ObliviateError):
        return None
    text = str(e)
    if os.strerror(errno.ENOSPC) in text or f"os error {errno.ENOSPC})" in text:
        return errno.ENOSPC
    if os.strerror(errno.EDQUOT) in text or f"os error {errno.EDQUOT})" in text:
        return errno.EDQUOT
    if isinstance(e, RuntimeError) and "inline_container" in text:  # torch.save's zip writer
        if "unexpected pos" in text:  # a short write (bytes written != bytes given): the space ran out mid-file,
            return errno.ENOSPC  # though what the failed write held may be free again by now (1.6 GB on SmolLM2)
        free = _free_bytes(where)
        if free is not None and free < 64 * 2 ** 20:
            return errno.ENOSPC
    return None


def disk_full(e: BaseException, path: str | Path | None) -> DiskFull | None:
    """The `DiskFull` error for `e` if it is a full disk (`_full_errno`; else None), naming the path and what is
    free there."""
    where = Path(getattr(e, "filename", None) or path or ".")
    code = _full_errno(e, where)
    if code is None:
        return None
    free = _free_bytes(where)
    room = f"{free / 2 ** 20:.1f} MiB free there" if free is not None else "free space unknown"
    return DiskFull(f"{where}: {'disk quota exceeded' if code == errno.EDQUOT else 'no space left on device'} "
                    f"({room}); nothing half-written was kept, free some space and run again")


def public_mode(path: str | Path) -> None:
    """Give the regular file `path` the mode a plain open() would (0o666 & ~umask): mkstemp makes 0600."""
    os.chmod(path, 0o666 & ~_UMASK)


@contextlib.contextmanager
def disk_full_errors(path: str | Path) -> Iterator[None]:
    """A full disk inside the block (`disk_full`) leaves it as `DiskFull` naming `path`; other errors pass."""
    try:
        yield
    except Exception as e:
        full = disk_full(e, path)
        if full:
            raise full from None
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path` to write; when the block succeeds it becomes `path` (mode per umask).

    On any error the temporary is removed and `path` is untouched; a full disk is `DiskFull`."""
    path = Path(path)
    with disk_full_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            yield Path(tmp)
            public_mode(tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (a reader sees the old file or the new one, never half)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, ensure_ascii: bool = True) -> Path:
    """Write `obj` as JSON to `path` atomically (`write_text`)."""
    return write_text(path, json.dumps(obj, indent=indent, default=_json_default, ensure_ascii=ensure_ascii) + "\n")


def write_json_lines(path: str | Path, rows: list) -> Path:
    """Write `rows` as JSON Lines (one object per line) to `path` atomically (`write_text`)."""
    return write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def _public_modes(root: Path) -> None:
    for dirpath, _, files in os.walk(root):  # os.walk does not follow symlinks
        for f in files:
            if not os.path.islink(os.path.join(dirpath, f)):
                public_mode(os.path.join(dirpath, f))


def remove_entry(path: str | Path) -> None:
    """Delete a file, a symlink (the link only, never what it points to) or a directory tree (rmtree unlinks the
    symlinks inside without following them)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh `<final>.partial` directory to fill; when the block succeeds it replaces `final`.

    A killed or failed run leaves only the `.partial` directory (never a half-written `final`); the next run starts
    it over. On a full disk it is removed at once, to give the space back (`DiskFull` names the path)."""
    final = Path(final)
    tmp = final.with_name(final.name + ".partial")
    with disk_full_errors(final):
        try:
            remove_entry(tmp)
            tmp.mkdir(parents=True)
            yield tmp
            _public_modes(tmp)
            remove_entry(final)
            tmp.rename(final)
        except Exception as e:
            if disk_full(e, final):
                with contextlib.suppress(OSError):
                    remove_entry(tmp)
            raise


@contextlib.contextmanager
def atomic_into(out: str | Path) -> Iterator[Path]:
    """Yield a temporary directory inside `out`; when the block succeeds, each entry written there is renamed into
    `out` (config.json last, so a directory with a config holds every other file of the save). A model save:
    `save_pretrained` into it never leaves a half-written model under `out`'s names."""
    out = Path(out)
    with disk_full_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=".save."))
        try:
            yield tmp
            _public_modes(tmp)
            for name in sorted(os.listdir(tmp), key=lambda n: (n == "config.json", n)):
                if (out / name).is_symlink() or (out / name).is_dir():
                    remove_entry(out / name)
                os.replace(tmp / name, out / name)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)


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


def _holds_runs(out: Path) -> bool:
    """A directory of obliviate run directories (e.g. `runs/` above `runs/ga`, made as their parent)."""
    return any(d.is_dir() and not d.is_symlink() and is_ours(d) for d in out.iterdir())


def claim(out: str | Path, *inputs: str | Path | None, what: str = "--out", collection: bool = False) -> Path:
    """Make `out` an obliviate run directory, or refuse with one line (see the module docstring). With
    `collection` (the report card of several runs), a directory that holds obliviate run directories counts as
    ours too."""
    out = Path(out)
    for inp in inputs:
        if inp is not None and Path(inp).exists() and out.resolve() == Path(inp).resolve():
            raise ObliviateError(f"{out}: {what} is the input model's directory; choose another {what}")
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ObliviateError(f"{out}: {what} cannot be created, {parent} is a file, not a directory")
            break
    if out.is_dir() and _marker(out) is None and any(out.iterdir()) and not (collection and _holds_runs(out)):
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
        if disk_full(e, out):
            raise disk_full(e, out) from None
        raise ObliviateError(f"{out}: {what} is not writable ({e.strerror or e})") from None
    return out


def _entries(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()
            if p.name not in _OWN and not p.name.startswith((".write-test.", ".tmp", ".save."))}


def record_written(out: str | Path, names: list[str] | None = None) -> None:
    """Add `names` (default: every top-level entry now in `out`) to the marker's list of what obliviate wrote."""
    out = Path(out)
    info = _marker(out) or {"written": []}
    now = names if names is not None else sorted(_entries(out))
    info["written"] = sorted(set(info.get("written", [])) | set(now))
    write_json(out / MARKER, info)


def remove_ours(out: str | Path, names: list[str] | tuple[str, ...]) -> list[str]:
    """Delete those of `names` in `out` that obliviate wrote (per the marker); return what was removed. A symlink is
    unlinked, never followed (`remove_entry`)."""
    out = Path(out)
    written = set((_marker(out) or {}).get("written", []))
    removed = []
    for name in names:
        p = out / name
        if name in written and (p.exists() or p.is_symlink()):
            remove_entry(p)
            removed.append(name)
    return removed


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)


@contextlib.contextmanager
def lock(out: str | Path) -> Iterator[Path]:
    """Hold the OS lock on `<out>/.obliviate.lock` while the block runs; refuse if another process holds it.

    Re-entrant within one process (`is_singleton`); the kernel drops the lock when its holder dies (kill -9 too)."""
    from filelock import FileLock, Timeout

    out = Path(out)
    path = out / LOCK
    file_lock = FileLock(path, timeout=0, is_singleton=True, thread_local=False, on_acquired=_write_pid)
    try:
        file_lock.acquire()
    except Timeout:
        try:
            holder = f" (pid {int(path.read_text().strip())})"
        except (OSError, ValueError):
            holder = ""
        raise ObliviateError(f"{out}: another obliviate run{holder} is using this directory; wait for it or choose "
                             "another --out") from None
    except OSError as e:
        raise (disk_full(e, path) or ObliviateError(f"{path}: cannot take the run lock ({e.strerror or e})")) \
            from None
    try:
        yield out
    finally:
        file_lock.release()


def _first_missing(out: Path) -> Path | None:
    """The outermost of `out` and its parents that does not exist yet (what claiming `out` creates)."""
    missing = None
    for p in [out, *out.parents]:
        if p.exists() or p.is_symlink():
            return missing
        missing = p
    return missing


def _undo_claim(out: Path, created: Path | None, *, held: bool) -> None:
    """A run that failed before writing anything: remove its marker (only while `held`, i.e. holding the lock: a
    directory whose lock is someone else's is left alone), then an orphan lock file, then the directories the claim
    made. A directory with any other entry is kept whole."""
    if not out.is_dir() or _entries(out):
        return
    if held:
        with contextlib.suppress(OSError):
            (out / MARKER).unlink()
        return
    if not (out / MARKER).exists():
        with contextlib.suppress(OSError):
            (out / LOCK).unlink()
    if created is not None:
        for d in [out, *out.parents]:
            with contextlib.suppress(OSError):
                d.rmdir()
            if d == created:
                break


@contextlib.contextmanager
def run_dir(out: str | Path, *inputs: str | Path | None, what: str = "--out",
            collection: bool = False) -> Iterator[Path]:
    """The run frame of every verb that writes: `claim` + `lock`; on leaving (also on error) record what the run
    wrote in the marker. A full disk in the block is `DiskFull` (one line); a run that fails having written nothing
    leaves no trace (`_undo_claim`): a new directory is removed, a user's empty one gets its emptiness back."""
    created = _first_missing(Path(out))
    try:
        out = claim(out, *inputs, what=what, collection=collection)
    except BaseException:
        _undo_claim(Path(out), created, held=False)
        raise
    failed, locked = True, False
    try:
        with lock(out):
            locked = True
            before = _entries(out)
            try:
                with disk_full_errors(out):
                    yield out
                failed = False
            finally:
                with contextlib.suppress(OSError, ObliviateError):
                    record_written(out, sorted(_entries(out) - before))
                if failed:
                    _undo_claim(out, created, held=True)
    finally:
        if failed and locked:  # a refused lock is someone else's run: nothing of theirs is touched
            _undo_claim(out, created, held=False)
