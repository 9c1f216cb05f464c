"""Progress display and process rank: obliviate's one progress bar per stage, drawn by the main process only.

- `is_main_rank()`: True unless this is a non-main process of `accelerate launch` / torchrun (read from RANK, so no
  process group is needed); only the main process draws bars, claims a run directory and writes.
- `progress_bar(...)`: the one bar (`tqdm.auto`), off when `progress` is False, on other ranks or under
  `TQDM_DISABLE`.
- `library_bars_off(*libraries)`: transformers' / datasets' own bars off inside (one display per stage).
- `close_progress_bars()`: close the open bars before an error or interrupt line prints.

`obliviate.rundir` re-exports these names, the import path callers used before this module existed.
"""

from __future__ import annotations

import contextlib
import os


def is_main_rank() -> bool:
    """False in the non-main processes of `accelerate launch` / torchrun (they set RANK): only the main process
    claims, locks and writes a run directory. Read from the environment, so no process group is needed."""
    return int(os.environ.get("RANK", "0")) == 0


def progress_bar(iterable=None, *, desc: str, progress: bool = True, leave: bool = False, **kw):
    """obliviate's one progress bar (`tqdm.auto`): shown on the main process only (the other ranks of
    `accelerate launch` draw none), off when `progress` is False or tqdm's `TQDM_DISABLE` is set, cleared when
    done unless `leave`."""
    from tqdm.auto import tqdm

    off = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    return tqdm(iterable, desc=desc, leave=leave, disable=off or not (progress and is_main_rank()), **kw)


# (module, is-enabled, disable, enable) of each library's own progress bars
_LIBRARY_BARS = {
    "transformers": ("transformers.utils.logging", "is_progress_bar_enabled", "disable_progress_bar",
                     "enable_progress_bar"),
    "datasets": ("datasets.utils.logging", "is_progress_bar_enabled", "disable_progress_bar", "enable_progress_bar"),
}


@contextlib.contextmanager
def library_bars_off(*libraries: str):
    """The named libraries' own bars ("Loading weights", "Generating train split", ...) off inside, restored
    after: a command shows one progress display per stage, not a library's bar nested in it."""
    import importlib

    turned_off = []
    for name in libraries or tuple(_LIBRARY_BARS):
        module, enabled, disable, enable = _LIBRARY_BARS[name]
        mod = importlib.import_module(module)
        if getattr(mod, enabled)():
            getattr(mod, disable)()
            turned_off.append(getattr(mod, enable))
    try:
        yield
    finally:
        for enable in turned_off:
            enable()


def close_progress_bars() -> None:
    """Close every open bar (an error or interrupt unwinding past them): the line printed next starts clean
    instead of on a bar's line, and no stale bar is redrawn under it."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
