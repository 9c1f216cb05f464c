"""The developer guide's shape limits: no module over 400 lines (the few still over are listed, and must stay
listed only while they are), and the unlearning loop's functions each under 60 lines (the loop fits on a screen)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "obliviate"
LIMIT = 400
STILL_OVER = {"classifier/steal.py"}  # to be split; remove from here when it is


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_over_the_limit():
    over = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if lines(p) > LIMIT}
    assert over <= STILL_OVER, f"over {LIMIT} lines: {sorted(over - STILL_OVER)}"
    assert STILL_OVER <= over, f"no longer over {LIMIT} lines, drop from STILL_OVER: {sorted(STILL_OVER - over)}"


def test_the_split_modules_stay_split():
    for name in ("rundir.py", "progress.py", "config.py", "unlearn/loop.py", "unlearn/setup.py"):
        assert lines(SRC / name) <= LIMIT, name


def test_the_loops_functions_fit_on_a_screen():
    tree = ast.parse((SRC / "unlearn" / "loop.py").read_text())
    long = {f.name: f.end_lineno - f.lineno + 1 for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > 60}
    assert not long, long


def test_the_moved_names_keep_their_loop_import_path():
    """unlearn/loop.py's setup moved to unlearn/setup.py: what callers import from the loop still imports."""
    from obliviate.unlearn import loop, setup

    for name in ("_Run", "_prepare_model", "recipe_needs", "_start", "_check_inputs"):
        assert getattr(loop, name) is getattr(setup, name), name
    assert callable(loop.unlearn) and callable(loop.forget_probe)
