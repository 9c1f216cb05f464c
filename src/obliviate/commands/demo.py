"""obliviate demo [--preset demo] [--seeds 3] [--out runs/demo] [--model-args dtype=bfloat16,...] [key=value ...]

Settings: DemoConfig's defaults < the `demo` command preset (obliviate/pipeline/presets/demo.yaml) < --config
YAML < key=value < flags.
"""

from obliviate.models.hub import add_model_arguments


def add_arguments(p):
    p.add_argument("--preset", default=None, help="world preset: tiny | demo (default) | full")
    p.add_argument("--seeds", type=int, default=None, help="seeds per recipe (default 3)")
    p.add_argument("--out", default=None, help="run directory (default runs/demo); finished stages are reused")
    p.add_argument("--recipes", default=None, help="comma-separated recipes (default: the six of the seeds)")
    p.add_argument("--config", help="YAML with DemoConfig fields")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="DemoConfig overrides, e.g. relearn_steps=5,10 "
                   "unlearn_overrides='npo+gd:lr=2e-3' attacks=relearn,jailbreak,mia")


def resolve_config(args):
    """The DemoConfig of a `demo` command line."""
    from obliviate.pipeline import DemoConfig, resolve

    from obliviate.commands.flags import checked

    return resolve(DemoConfig, ["demo"], args.config, args.overrides, recipes=args.recipes, **checked(
        args.overrides, preset=args.preset, seeds=args.seeds, out=args.out, model_args=args.model_args))


def run(args):
    import time

    from obliviate.html import table_md
    from obliviate.pipeline import run_demo
    from obliviate.report.card import collect, headline
    from obliviate.report.glossary import arrowed

    cfg = resolve_config(args)
    _say_what_is_not_installed()
    t = time.perf_counter()
    report = run_demo(cfg)
    print(f"demo finished in {time.perf_counter() - t:.0f} s; report card: {report} (and {report.with_suffix('.md')})")
    headers, rows = headline(collect(report.parent))
    keep = [headers.index(h) for h in SUMMARY_COLUMNS if h in headers]
    print(table_md([arrowed(headers[i]) for i in keep], [[r[i] for i in keep] for r in rows]))
    return run_summary(report)


def run_summary(report) -> dict:
    """The --json summary of a demo / reproduce run: the report card's headline table (results.json: numbers,
    null for not computed) and the paths of the outputs."""
    from obliviate.reader import read_json_object

    out = report.parent
    results = read_json_object(out / "results.json")
    outputs = {"report": str(report), "markdown": str(report.with_suffix(".md")), "results": str(out / "results.json"),
               "demo": str(out / "demo.json")}
    if (out / "claims.json").is_file():
        outputs["claims"] = str(out / "claims.json")
    return {"out": str(out), "headline": {"headers": results["headers"], "rows": results["rows"]},
            "not_computed": results.get("not_computed", {}), "outputs": outputs}


def _say_what_is_not_installed() -> None:
    """Before any training: a metric whose optional model is not installed is "not computed", said now."""
    import sys

    from obliviate.evaluate.config import EvalConfig
    from obliviate.evaluate.embeddings import embedder_missing

    why = embedder_missing(EvalConfig().embedder)
    if why:
        print(f"obliviate demo: note: Cosine Similarity will be not computed: {why}", file=sys.stderr)


# the columns of the report card's headline printed at the end of a demo
SUMMARY_COLUMNS = ("model", "seeds", "Forget Quality", "Model Utility", "FE (no ES)", "MIA AUC (Min-K)", "PrivLeak",
                   "forget ROUGE", "retain ROUGE", "retain Refusal")
