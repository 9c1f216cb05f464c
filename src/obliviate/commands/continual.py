"""obliviate continual --model TARGET --data DIR --forget forget10 --tasks 9 --recipe me+gd
[--reference previous|original] --out RUN [key=value ...]

Unlearns the tasks one after another (layout: obliviate/scenarios/continual.py), evaluates after each and
writes RUN/continual.json, RUN/continual.png and a per-task table. `key=value` overrides are UnlearnConfig
fields applied to every task. Started again with the same settings, a killed run continues. The defaults of
--forget, --tasks and --full are ContinualConfig's (obliviate/scenarios/continual.py); this command has no preset.
"""

from pathlib import Path

from obliviate.commands.flags import add_lora, checked
from obliviate.models.hub import add_model_arguments


def add_arguments(p):
    p.add_argument("--model", required=True,
                   help="the model before the first task: directory, PEFT adapter dir, hub id, smollm2-135m-instruct")
    p.add_argument("--data", required=True, help="world directory (or TOFU-schema directory / hub id) holding 'full'")
    p.add_argument("--forget", default=None, help="split whose size is one task (default forget10); "
                   "records with task_id are grouped by it")
    p.add_argument("--tasks", type=int, default=None, help="number of tasks (default 9, the paper's for forget10)")
    p.add_argument("--recipe", default=None, help="objective[+regularizer][+smoothing], e.g. npo+gd (see `obliviate ls`)")
    p.add_argument("--reference", choices=("previous", "original"), default=None,
                   help="reference model of npo/dpo/kl/rmu: the model each task starts from (default) or the original")
    p.add_argument("--retain", default=None, help="base retain split (default: 'full' minus the task pool)")
    p.add_argument("--full", default=None, help="split the tasks are cut from (default full)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", help="YAML file with UnlearnConfig fields (applied to every task)")
    p.add_argument("--eval-config", help="YAML file with EvalConfig fields (e.g. max_new_tokens, max_items)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation length of the evaluation")
    p.add_argument("--nli", default=None, help="NLI model id/path for the Entailment Score (else FE/MU without ES)")
    p.add_argument("--seed", type=int, default=None)
    add_lora(p, "train a LoRA adapter per task (merged after it)")
    p.add_argument("--keep-models", action="store_true", help="keep every task's model (default: only the latest)")
    p.add_argument("--overwrite", action="store_true", help="discard a previous continual run in --out")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle checkpoints (trusted files only)")
    p.add_argument("--trust-remote-code", action="store_true")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="UnlearnConfig overrides, e.g. lr=1e-3 max_steps=20")


def resolve_config(args) -> dict:
    """{"unlearn": UnlearnConfig (every task), "eval": EvalConfig, "continual": ContinualConfig} of a `continual`
    command line: defaults < --config / --eval-config YAML < key=value (UnlearnConfig) < flags."""
    from obliviate.config import load_config
    from obliviate.evaluate import EvalConfig
    from obliviate.scenarios import check_eval_config
    from obliviate.scenarios.continual import ContinualConfig
    from obliviate.unlearn import UnlearnConfig

    ucfg = load_config(UnlearnConfig, args.config, args.overrides, recipe=args.recipe, **checked(
        args.overrides, seed=args.seed, lora=args.lora, reference=args.reference))
    ecfg = load_config(EvalConfig, args.eval_config, None, max_new_tokens=args.max_new_tokens, nli=args.nli)
    check_eval_config(ecfg)
    given = dict(forget=args.forget, tasks=args.tasks, full=args.full, retain=args.retain)
    ccfg = ContinualConfig(**{k: v for k, v in given.items() if v is not None}, keep_models=args.keep_models)
    return {"unlearn": ucfg, "eval": ecfg, "continual": ccfg}


def run(args):
    from obliviate.models.loading import check_output_dir, load_model
    from obliviate.html import figure_png, table_md
    from obliviate.report.scenarios import continual_table, plot_continual
    from obliviate.rundir import run_dir, write_bytes
    from obliviate.scenarios.continual import continual

    ucfg, ecfg, ccfg = resolve_config(args).values()
    with run_dir(args.out, args.model) as out:  # claimed and locked: a second run on this --out is refused
        check_output_dir(out, args.model)
        load = dict(allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                    model_args=args.model_args)
        model, tok = load_model(args.model, **load)
        info = continual(model, tok, args.data, ccfg, ucfg, out=out, eval_cfg=ecfg, model_name=str(args.model),
                         load_model=lambda path: load_model(path, **load), overwrite=args.overwrite)
        write_bytes(out / "continual.png", figure_png(plot_continual([info])))
    headers, rows = continual_table(info)
    print(f"continual {info['recipe']} (reference {info['reference']}), {len(info['plan'])} tasks of "
          f"{info['plan'][0]['n']} items, base retain {info['base_retain_n']} items")
    print(table_md(headers, rows))
    print(f"wrote {Path(out) / 'continual.json'} and continual.png")
    return {"out": str(out), "recipe": info["recipe"], "reference": info["reference"], "tasks": len(info["plan"]),
            "outputs": {"continual": str(Path(out) / "continual.json"), "plot": str(Path(out) / "continual.png")}}
