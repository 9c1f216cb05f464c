"""obliviate reproduce [--model smollm2-135m-instruct] [--preset reproduce] [--seeds 3] [--lora]
[--protocol matched|fixed] [--out runs/reproduce] [--model-args dtype=bfloat16,...] [key=value ...]

The demo's pipeline on a pretrained model (TOFU's protocol): fine-tune it on the world's `full` (+ world facts)
into the target and on `retain90` into the retain model (every weight, or a LoRA adapter with --lora), unlearn forget10 with the six recipes × seeds, evaluate,
attack, run continual unlearning, then test the papers' claims (report.claims) and write the report card.
Protocol matched (the default): every recipe unlearns at one lr until its forget Prob reaches the retain model's,
so the claims also compare recipes at matched forgetting; fixed: one step count for all (pipeline.config.PROTOCOLS).
The settings: the `reproduce` command preset (obliviate/pipeline/presets/reproduce.yaml, + reproduce-lora.yaml with
--lora) over DemoConfig's defaults; why each was chosen: docs/reproduction.md. Finished stages are reused.
"""

from obliviate.commands.flags import add_lora, checked
from obliviate.models.hub import add_model_arguments


def add_arguments(p):
    p.add_argument("--model", default=None, help="pretrained model to fine-tune: smollm2-135m-instruct (default), a "
                   "hub id or a local directory")
    p.add_argument("--preset", default=None, help="world preset (default reproduce: 12 authors × 8 questions, forget10 = 2 authors)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per recipe (default 3)")
    add_lora(p, "fine-tune the target and retain models as LoRA adapters (r 16, merged) instead of every weight; "
             "the DemoConfig field finetune_lora")
    p.add_argument("--out", default=None, help="run directory (default runs/reproduce); finished stages are reused")
    p.add_argument("--protocol", default=None, choices=("matched", "fixed"),
                   help="matched (default): every recipe unlearns until its forget Prob reaches the retain model's "
                        "(or matched_epochs), keeping the best point under a utility guard; fixed: the same step "
                        "count for every recipe (the protocol before issue 23)")
    p.add_argument("--recipes", default=None, help="comma-separated recipes (default: the six of the seeds)")
    p.add_argument("--config", help="YAML with DemoConfig fields (over the reproduce defaults)")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="DemoConfig overrides, e.g. finetune_epochs=6 continual_seeds=2 "
                   "unlearn_overrides='*:lr=1e-5'")


def resolve_config(args):
    """The DemoConfig of a `reproduce` command line: presets reproduce (+ reproduce-lora) < YAML < overrides < flags."""
    from obliviate.pipeline import DemoConfig, resolve

    flags = dict(recipes=args.recipes, **checked(args.overrides, base_model=args.model, preset=args.preset,
                                                 seeds=args.seeds, out=args.out, finetune_lora=args.lora,
                                                 protocol=args.protocol, model_args=args.model_args))
    cfg = resolve(DemoConfig, ["reproduce"], args.config, args.overrides, **flags)
    if cfg.finetune_lora:
        cfg = resolve(DemoConfig, ["reproduce", "reproduce-lora"], args.config, args.overrides, **flags)
    return cfg


def run(args):
    import time

    from obliviate.html import table_md
    from obliviate.pipeline import run_demo
    from obliviate.reader import read_json

    cfg = resolve_config(args)
    t = time.perf_counter()
    report = run_demo(cfg)
    print(f"reproduce finished in {time.perf_counter() - t:.0f} s; report card: {report} (and "
          f"{report.with_suffix('.md')}); claims: {report.parent / 'claims.json'}")
    claims = read_json(report.parent / "claims.json")  # written with the report card
    print(table_md(["claim", "verdict", "why"], [[c["claim"], c["verdict"], c["why"]] for c in claims]))
    from obliviate.commands.demo import run_summary

    return {**run_summary(report), "claims": [{k: c[k] for k in ("claim", "verdict", "why")} for c in claims]}
