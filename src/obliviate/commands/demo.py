"""obliviate demo [--preset demo] [--seeds 3] [--out runs/demo] [key=value ...]"""


def add_arguments(p):
    p.add_argument("--preset", default=None, help="world preset: tiny | demo (default) | full")
    p.add_argument("--seeds", type=int, default=None, help="seeds per recipe (default 3)")
    p.add_argument("--out", default=None, help="run directory (default runs/demo); finished stages are reused")
    p.add_argument("--recipes", default=None, help="comma-separated recipes (default: the six of the seeds)")
    p.add_argument("--config", help="YAML with DemoConfig fields")
    p.add_argument("overrides", nargs="*", help="DemoConfig overrides, e.g. relearn_steps=5,10 "
                   "unlearn_overrides='npo+gd:lr=2e-3' attacks=relearn,jailbreak,mia")


def run(args):
    import time

    from obliviate.config import load_config
    from obliviate.demo import DemoConfig, run_demo

    cfg = load_config(DemoConfig, args.config, args.overrides, preset=args.preset, seeds=args.seeds, out=args.out,
                      recipes=args.recipes)
    t = time.perf_counter()
    report = run_demo(cfg)
    print(f"demo finished in {time.perf_counter() - t:.0f} s; report card: {report} (and {report.with_suffix('.md')})")
    from obliviate.report.card import collect, headline
    from obliviate.html import table_md

    headers, rows = headline(collect(report.parent))
    keep = [headers.index(h) for h in SUMMARY_COLUMNS if h in headers]
    print(table_md([headers[i] for i in keep], [[r[i] for i in keep] for r in rows]))


# the columns of the report card's headline printed at the end of a demo
SUMMARY_COLUMNS = ("model", "seeds", "Forget Quality", "Model Utility", "FE (no ES)", "MIA AUC (Min-K)", "PrivLeak",
                   "forget ROUGE", "retain ROUGE", "retain Refusal")
