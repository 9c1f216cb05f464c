"""obliviate bench NAME [args...]: run a benchmark script from the repo's benchmarks/ folder; it prints figures."""

import runpy
import sys
from pathlib import Path

from obliviate import ObliviateError

BENCH_DIR = Path(__file__).resolve().parents[3] / "benchmarks"


def add_arguments(p):
    names = sorted(f.stem for f in BENCH_DIR.glob("*.py")) if BENCH_DIR.is_dir() else []
    p.add_argument("name", help=f"one of: {', '.join(names) or '(no benchmarks/ folder: run from a repo checkout)'}")
    p.add_argument("args", nargs="*", help="passed to the script")


def run(args):
    path = BENCH_DIR / f"{args.name}.py"
    if not path.is_file():
        have = sorted(f.stem for f in BENCH_DIR.glob("*.py")) if BENCH_DIR.is_dir() else []
        raise ObliviateError(f"no benchmark {args.name!r} in {BENCH_DIR}; available: {', '.join(have) or 'none'}")
    sys.argv = [str(path), *args.args]
    runpy.run_path(str(path), run_name="__main__")
