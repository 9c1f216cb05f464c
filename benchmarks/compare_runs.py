"""Are two run directories numerically the same? Every numeric leaf of every *.json / *.jsonl file, side by side.

    python benchmarks/compare_runs.py runs/before runs/after [--rtol 0] [--show 20]

Walks both directories, pairs files by relative path, and compares every number (int, float, bool; NaN equals
NaN) at the same place in both, exactly unless `--rtol` is given. Leaves under keys that measure the machine,
not the method, are skipped: any key containing "second", "time", "timing", "version" or "rss", and "command". Strings
are not compared (they hold paths and hashes of the code), except model weight fingerprints (keys containing
"fingerprint"): equal fingerprints mean equal weights. Reports files present on one side only, numbers
present on one side only, and differing numbers; the exit status is 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SKIP_PARTS = ("second", "time", "timing", "version", "rss")
SKIP_KEYS = {"command"}


def skipped(key: str) -> bool:
    k = key.lower()
    return k in SKIP_KEYS or any(p in k for p in SKIP_PARTS)


def numeric_leaves(obj, path: str = "") -> dict[str, float]:
    """{json path: value} of every numeric leaf (and weight fingerprint) outside the skipped keys."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not skipped(str(k)):
                out.update(numeric_leaves(v, f"{path}.{k}"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(numeric_leaves(v, f"{path}[{i}]"))
    elif isinstance(obj, (bool, int, float)) or (isinstance(obj, str) and "fingerprint" in path.rsplit(".", 1)[-1]):
        out[path or "."] = obj
    return out


def load(path: Path):
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def same(a, b, rtol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if rtol == 0 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
        return a == b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for ext in ("*.json", "*.jsonl") for p in root.rglob(ext)
            if not any(part.endswith(".partial") or part.startswith(".") for part in p.relative_to(root).parts)}


def compare(a: Path, b: Path, rtol: float = 0.0) -> dict:
    fa, fb = files(a), files(b)
    report = {"files": 0, "numbers": 0, "only_a": sorted(fa - fb), "only_b": sorted(fb - fa), "differ": [],
              "missing": []}
    for rel in sorted(fa & fb):
        la, lb = numeric_leaves(load(a / rel)), numeric_leaves(load(b / rel))
        report["files"] += 1
        report["numbers"] += len(la.keys() & lb.keys())
        report["missing"] += [f"{rel}:{k}" for k in sorted(la.keys() ^ lb.keys())]
        report["differ"] += [(f"{rel}:{k}", la[k], lb[k]) for k in sorted(la.keys() & lb.keys())
                             if not same(la[k], lb[k], rtol)]
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: identical)")
    ap.add_argument("--show", type=int, default=20, help="differences listed per kind")
    args = ap.parse_args(argv)
    r = compare(args.a, args.b, args.rtol)
    how = "exact" if not args.rtol else f"rtol {args.rtol}"
    print(f"{r['files']} files in both, {r['numbers']} numbers compared ({how}): "
          f"{len(r['differ'])} differ, {len(r['missing'])} on one side only; files only in A: {len(r['only_a'])}, "
          f"only in B: {len(r['only_b'])}")
    for title, items in (("only in A", r["only_a"]), ("only in B", r["only_b"]), ("number on one side", r["missing"]),
                         ("differ", [f"{k}: {x!r} vs {y!r}" for k, x, y in r["differ"]])):
        for item in items[:args.show]:
            print(f"  {title}: {item}")
        if len(items) > args.show:
            print(f"  ... {len(items) - args.show} more {title}")
    return int(bool(r["differ"] or r["missing"] or r["only_a"] or r["only_b"]))


if __name__ == "__main__":
    sys.exit(main())
