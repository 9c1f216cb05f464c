"""obliviate realworld --model smollm2-135m-instruct [--forget-subjects N] [--neighbour-subjects M]
--recipe me+gd --out RUN [key=value ...]

Builds a probe set of facts the model really knows (countryinfo; layout and rule in
obliviate/scenarios/realworld.py) or reads the paper's real-world files (--forget-file, --neighbour-file,
--neighbour-eval-file), evaluates, unlearns (LoRA by default; --no-lora for all weights), evaluates
again and writes RUN/realworld.json. `key=value` overrides are UnlearnConfig fields. Unlearning settings: the
`realworld` command preset (obliviate/pipeline/presets/realworld.yaml) < --config YAML < key=value < flags.
"""


from obliviate import ObliviateError
from obliviate.commands.flags import add_lora, checked
from obliviate.models.hub import add_model_arguments


def add_arguments(p):
    p.add_argument("--model", default="smollm2-135m-instruct", help="pretrained model: smollm2-135m-instruct, "
                   "a directory or a hub id (default smollm2-135m-instruct)")
    p.add_argument("--recipe", default="me+gd", help="objective[+regularizer][+smoothing] (default me+gd)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--countries", type=int, default=None, help="probe the N most populous countries (default 30)")
    p.add_argument("--forget-subjects", type=int, default=None, help="countries to forget (default 4)")
    p.add_argument("--neighbour-subjects", type=int, default=None, help="neighbour countries trained as retain set (default 4)")
    p.add_argument("--eval-subjects", type=int, default=None, help="neighbour countries only evaluated (default 4)")
    p.add_argument("--general-subjects", type=int, default=None, help="countries of the general-utility probe (default 4)")
    p.add_argument("--keep-rouge", type=float, default=None, help="probe kept when ROUGE-L recall of the answer >= this (0.5)")
    p.add_argument("--forget-file", help="the paper's real-world forget file (name, question, answer[, golden_answer, ...])")
    p.add_argument("--neighbour-file", help="neighbour file for training (same schema)")
    p.add_argument("--neighbour-eval-file", help="neighbour file only evaluated (with perturbed_answer)")
    add_lora(p, "train a LoRA adapter (the default here) or, with --no-lora, every weight",
             old_negation="--full-finetune")
    p.add_argument("--nli", default=None, help="NLI model id/path for the Entailment Score")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", help="YAML file with UnlearnConfig fields")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle checkpoints (trusted files only)")
    p.add_argument("--trust-remote-code", action="store_true")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="UnlearnConfig overrides, e.g. lr=5e-4 epochs=3 alpha=0.5")


def unlearn_config(args):
    """The UnlearnConfig of a `realworld` command line: the realworld preset < YAML < overrides < flags."""
    from obliviate.pipeline import resolve
    from obliviate.unlearn import UnlearnConfig

    return resolve(UnlearnConfig, ["realworld"], args.config, args.overrides, recipe=args.recipe,
                   **checked(args.overrides, seed=args.seed, lora=args.lora))


def realworld_config(args):
    """The RealworldConfig (the probe set) of the flags."""
    from obliviate.scenarios.realworld import RealworldConfig

    return RealworldConfig(**{k: v for k, v in dict(
        countries=args.countries, forget_subjects=args.forget_subjects, neighbour_subjects=args.neighbour_subjects,
        eval_subjects=args.eval_subjects, general_subjects=args.general_subjects, keep_rouge=args.keep_rouge,
        seed=args.seed).items() if v is not None})


def resolve_config(args) -> dict:
    """{"unlearn": UnlearnConfig, "realworld": RealworldConfig} of a `realworld` command line."""
    return {"unlearn": unlearn_config(args), "realworld": realworld_config(args)}


def run(args):
    from obliviate.evaluate import EvalConfig
    from obliviate.html import table_md
    from obliviate.models.loading import load_model
    from obliviate.report.scenarios import realworld_table
    from obliviate.rundir import run_dir
    from obliviate.scenarios.realworld import load_user_sets, realworld

    ucfg, rcfg = unlearn_config(args), realworld_config(args)
    files = [args.forget_file, args.neighbour_file]
    if any(files) and not all(files):
        raise ObliviateError("user files: give both --forget-file and --neighbour-file")
    if args.neighbour_eval_file and not all(files):
        raise ObliviateError("--neighbour-eval-file needs --forget-file and --neighbour-file")
    probe_flags = [f for f in ("countries", "forget_subjects", "neighbour_subjects", "eval_subjects",
                               "general_subjects", "keep_rouge") if getattr(args, f) is not None]
    if all(files) and probe_flags:
        raise ObliviateError(f"--{probe_flags[0].replace('_', '-')} shapes the countryinfo probe set, which user "
                             "files replace")
    user = load_user_sets(*files, args.neighbour_eval_file) if all(files) else None
    with run_dir(args.out, args.model) as out:  # claimed and locked: a user's directory or a live run is refused
        if (out / "realworld.json").is_file() and not args.overwrite:
            raise ObliviateError(f"{out}: already holds a realworld run; choose another --out or pass --overwrite")
        model, tok = load_model(args.model, allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                              model_args=args.model_args)
        info = realworld(model, tok, rcfg, ucfg, out=out, user_sets=user, model_name=str(args.model),
                         eval_cfg=EvalConfig(max_new_tokens=rcfg.max_new_tokens, nli=args.nli))
    if "probes" in info:
        p = info["probes"]
        print(f"probes: {p['kept']} of {p['probes']} kept ({p['rule']}); {p['subjects_usable']} subjects with a "
              f"kept probe; by attribute (kept/all): " + ", ".join(f"{a} {k}/{n}" for a, (k, n) in p["by_attribute"].items()))
    print(", ".join(f"{k}: {v['items']} items / {len(v['subjects'])} subjects" for k, v in info["sets"].items()))
    print(table_md(*realworld_table(info)))
    print(f"{info['seconds']:.0f} s; wrote {out / 'realworld.json'}")
    return {"out": str(out), "recipe": ucfg.recipe, "lora": ucfg.lora, "seconds": info["seconds"],
            "sets": {k: v["items"] for k, v in info["sets"].items()}, "outputs": {"realworld": str(out / "realworld.json")}}
