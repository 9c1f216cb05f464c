"""obliviate attack <ATTACK> --model DIR --data DIR [--forget forget10] [--<config field> V ...] [--out DIR] [k=v ...]

    obliviate attack relearn --model M --data D --k 8 --steps-list 10,20,40 [--retain-results R/eval.json]
    obliviate attack jailbreak --model M --data D [--original-model TARGET --match-layer 2] [--position prefix|suffix]
        [--tokens 20] [--steps 250] [--search-width 128] [--topk 64] [--time-limit S] --out RUN
    obliviate attack mia --model M --data D [--retain-model R]
    obliviate attack quantize --model M --data D --original-model TARGET --retain-model R [--bits 8,4] [--method rtn]
        [--group-size 128]                    (also --data wmdp: MCQ accuracy after quantization)
    obliviate attack reformat --model M --data D --original-model TARGET --retain-model R
    obliviate attack incontext --model M --data D --original-model TARGET --retain-model R --shots 4

One subcommand per `attack.registry.ATTACKS` record: its flags, run, table and plot come from the record.
Each writes `<out>/<result>` (+ run.json, + `<out>/<attack>.png`); the report card's "Attacks" section shows
every attack whose results exist in a demo run's seed directories. A config field that is a list of step counts
(relearn's `steps`) is the flag `--steps-list` (`--steps` is a count everywhere else; the old relearn spelling
`--steps 10,20` still works, deprecated), and `--original` is now `--original-model`.
"""

from pathlib import Path

from obliviate import ObliviateError
from obliviate.commands.flags import add_original_model, checked, renamed
from obliviate.config import load_config
from obliviate.models.hub import add_model_arguments
from obliviate.rundir import run_dir, write_bytes

REFERENCE_HELP = {"original": "the model before unlearning (e.g. enhanced GCG: match its hidden states)",
                  "retain_model": "the retain model: its results side by side (what unlearning should reach)",
                  "retain_results": "the retain model's eval.json (adds Forget Quality)"}


def _literal(text: str) -> str:
    """Help text as argparse prints it literally ("Min-K%" would otherwise be a format directive)."""
    return text.replace("%", "%%")


def add_arguments(p):
    from obliviate.attack.registry import ATTACKS

    sub = p.add_subparsers(dest="attack", metavar="ATTACK", required=True)
    for name, attack in ATTACKS.items():
        a = sub.add_parser(name, help=_literal(attack.help or attack.title))
        a.add_argument("--model", required=True, help="the (unlearned) model directory")
        a.add_argument("--data", required=True)
        a.add_argument("--benchmark", default=None, help="default: inferred from --data, and said; the attacks read "
                       "the forget split by name, so benchmarks without one are refused")
        a.add_argument("--forget", default=None, help="forget split (default forget10)")
        a.add_argument("--out", default=None, help=f"default: <model>/{name}")
        a.add_argument("--config", help="YAML with the attack's config fields")
        a.add_argument("--allow-pickle", action="store_true")
        add_model_arguments(a)
        for field, help_ in attack.flags.items():
            flag = f"--{field.replace('_', '-')}"
            if _is_step_list(attack.config, field):
                renamed(a, flag, f"{flag}-list", f"cfg_{field}")
                flag = f"{flag}-list"
            a.add_argument(flag, dest=f"cfg_{field}", default=None, help=_literal(help_))
        for ref in attack.references:
            if ref == "original":
                add_original_model(a, "match its hidden states / compare against it", old=("--original",))
            else:
                a.add_argument(f"--{ref.replace('_', '-')}", default=None, help=REFERENCE_HELP.get(ref, ""))
        a.add_argument("overrides", nargs="*", help=f"{attack.config.__name__} overrides, e.g. batch_size=4")


def _is_step_list(config, field: str) -> bool:
    """A field holding several step counts (relearn's `steps: list[int]`): its flag is --<field>-list."""
    import typing

    return field == "steps" and typing.get_origin(typing.get_type_hints(config)[field]) is list


def resolve_config(args):
    """The attack's config of an `attack` command line: defaults < --config YAML < key=value < flags."""
    return _resolve(args)[0]


def _resolve(args):
    """(the attack's config, the line saying which benchmark --data is)"""
    import dataclasses

    from obliviate.attack.registry import get_attack
    from obliviate.data.benchmarks import resolve_benchmark

    attack = get_attack(args.attack)
    bench, said = resolve_benchmark(args.benchmark, args.data)
    flags = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    if "benchmark" in {f.name for f in dataclasses.fields(attack.config)}:  # the attack says what it applies to
        flags["benchmark"] = bench.name
    elif "forget" not in bench.split_roles:
        raise ObliviateError(f"attack {args.attack}: benchmark {bench.name} has no forget split read by name "
                             "(the attacks score answers to forget questions); use world or tofu data")
    cfg = load_config(attack.config, args.config, args.overrides, **checked(args.overrides, forget=args.forget,
                                                                            **flags))
    return cfg, said


def _preload(args, refs: dict):
    """With --model-args, the attacked model and the reference models are loaded here, as (model, tokenizer)
    pairs the attacks take as given; without, the attacks load them by path."""
    if not args.model_args:
        return args.model
    from obliviate.models.loading import load_model

    for ref in ("original", "retain_model"):
        if refs.get(ref):
            refs[ref] = load_model(refs[ref], allow_pickle=args.allow_pickle, model_args=args.model_args)
    return load_model(args.model, allow_pickle=args.allow_pickle, model_args=args.model_args)


def run(args):
    from obliviate.attack.registry import get_attack
    from obliviate.html import figure_png, table_md

    attack = get_attack(args.attack)
    cfg, said = _resolve(args)
    print(said)
    refs = {ref: getattr(args, ref) for ref in attack.references}
    model = _preload(args, refs)
    with run_dir(Path(args.out or Path(args.model) / args.attack), args.model) as out:
        result = attack.run(model, args.data, cfg, out, allow_pickle=args.allow_pickle, **refs)
        groups = {str(args.model): [result]}
        summary = attack.summary(result) if attack.summary else None
        print(f"{attack.title} on {args.model}" + (f": {summary}" if summary else ""))
        print(table_md(*attack.table(groups)))
        write_bytes(out / f"{args.attack}.png", figure_png(attack.plot(groups)))
    print(f"wrote {out / attack.result}, {out / 'run.json'}, {out / f'{args.attack}.png'}")
    return {"out": str(out), "attack": args.attack, "model": str(args.model), "summary": summary,
            "outputs": {"result": str(out / attack.result), "run": str(out / "run.json"),
                        "plot": str(out / f"{args.attack}.png")}}
