"""obliviate report RUN_DIR [--out DIR]: rebuild report.html / report.md from saved results (nothing is recomputed)."""


def add_arguments(p):
    p.add_argument("run_dir", help="a demo run directory (e.g. runs/demo)")
    p.add_argument("--out", default=None, help="directory to write the report into (default: RUN_DIR itself; use it "
                   "for a read-only run directory)")


def run(args):
    from obliviate.report.card import write_report
    from obliviate.rundir import run_dir

    # claimed (a user's directory is refused; one holding obliviate runs is a collection) and locked: a card is not
    # rebuilt under a demo that is still writing it; with --out the card goes there and RUN_DIR is only read
    if args.out:
        with run_dir(args.out):
            path = write_report(args.run_dir, out=args.out)
    else:
        with run_dir(args.run_dir, what="RUN_DIR", collection=True):
            path = write_report(args.run_dir)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return {"out": str(path.parent), "outputs": {"html": str(path), "markdown": str(path.with_suffix(".md")),
                                                 **_results(path.parent)}}


def _results(out) -> dict:
    return {"results": str(out / "results.json")} if (out / "results.json").is_file() else {}
