"""obliviate reproduce [--model smollm2-135m-instruct] [--preset reproduce] [--seeds 3] [--lora] [--out runs/reproduce]
[key=value ...]

The demo's pipeline on a pretrained model (TOFU's protocol): fine-tune it on the world's `full` (+ world facts)
into the target and on `retain90` into the retain model (every weight, or a LoRA adapter with --lora), unlearn forget10 with the six recipes × seeds, evaluate,
attack, run continual unlearning, then test the papers' claims (report.claims) and write the report card.
The defaults (`REPRODUCE`) and why each was chosen: docs/reproduction.md. Finished stages are reused.
"""

# The papers' settings scaled to a 135M model, 20 forget items and an hour on 2 CPU cores (docs/reproduction.md).
REPRODUCE = {
    "preset": "reproduce",
    "base_model": "smollm2-135m-instruct",
    "seeds": 3,
    "out": "runs/reproduce",
    "finetune_epochs": 8.0,
    "finetune_lr": 3e-4,
    "finetune_batch_size": 16,
    "unlearn_overrides": "*:lr=1e-4,epochs=2,batch_size=4,warmup_epochs=0.5",
    "max_new_tokens": 32,
    "relearn_k": 4,
    "relearn_steps": [5, 10],
    "attacks": ["relearn", "jailbreak", "mia"],
    "attack_recipes": ["npo+gd", "npo+gd+sam"],
    "jailbreak_tokens": 10,
    "jailbreak_steps": 4,
    "jailbreak_search_width": 16,
    "continual": ["npo+gd", "npo+gd:reference=original", "me+gd"],
    "continual_forget": "forget01",
    "continual_tasks": 2,
    "continual_seeds": 2,
}
# --lora (or finetune_lora=true): the fine-tuning settings a LoRA adapter needs to learn the world (pilot in
# docs/reproduction.md); values the user gives still win.
REPRODUCE_LORA = {"finetune_lr": 3e-3, "finetune_epochs": 8.0}


def add_arguments(p):
    p.add_argument("--model", default=None, help="pretrained model to fine-tune: smollm2-135m-instruct (default), a "
                   "hub id or a local directory")
    p.add_argument("--preset", default=None, help="world preset (default reproduce: 12 authors × 8 questions, forget10 = 2 authors)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per recipe (default 3)")
    p.add_argument("--lora", action="store_true", default=None, help="fine-tune the target and retain models as "
                   "LoRA adapters (r 16, merged) instead of every weight")
    p.add_argument("--out", default=None, help="run directory (default runs/reproduce); finished stages are reused")
    p.add_argument("--recipes", default=None, help="comma-separated recipes (default: the six of the seeds)")
    p.add_argument("--config", help="YAML with DemoConfig fields (over the reproduce defaults)")
    p.add_argument("overrides", nargs="*", help="DemoConfig overrides, e.g. finetune_epochs=6 continual_seeds=2 "
                   "unlearn_overrides='*:lr=1e-5'")


def resolve_config(args):
    """The DemoConfig of a `reproduce` command line: REPRODUCE (+ REPRODUCE_LORA) < YAML < overrides < flags."""
    from obliviate.config import load_config
    from obliviate.demo import DemoConfig

    flags = dict(base_model=args.model, preset=args.preset, seeds=args.seeds, out=args.out, recipes=args.recipes,
                 finetune_lora=args.lora)
    cfg = load_config(DemoConfig, args.config, args.overrides, defaults=REPRODUCE, **flags)
    if cfg.finetune_lora:
        cfg = load_config(DemoConfig, args.config, args.overrides, defaults={**REPRODUCE, **REPRODUCE_LORA}, **flags)
    return cfg


def run(args):
    import json
    import time

    from obliviate.demo import run_demo
    from obliviate.html import table_md

    cfg = resolve_config(args)
    t = time.perf_counter()
    report = run_demo(cfg)
    print(f"reproduce finished in {time.perf_counter() - t:.0f} s; report card: {report} (and "
          f"{report.with_suffix('.md')}); claims: {report.parent / 'claims.json'}")
    claims = json.loads((report.parent / "claims.json").read_text())  # written with the report card
    print(table_md(["claim", "verdict", "why"], [[c["claim"], c["verdict"], c["why"]] for c in claims]))
