"""obliviate report RUN_DIR [--out DIR]: rebuild report.html / report.md from saved results (nothing is recomputed)."""


def add_arguments(p):
    p.add_argument("run_dir", help="a demo run directory (e.g. runs/demo)")
    p.add_argument("--out", default=None, help="directory to write the report into (default: RUN_DIR itself; use it "
                   "for a read-only run directory)")


def run(args):
    from obliviate.report.card import write_report

    path = write_report(args.run_dir, out=args.out)
    print(f"wrote {path} and {path.with_suffix('.md')}")
