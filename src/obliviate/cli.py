"""The `obliviate` command: one subcommand per pipeline verb.

Each verb lives in `obliviate/commands/<verb>.py` (the classifier verbs in
`obliviate/classifier/commands/<verb>.py`) with two functions,
`add_arguments(parser)` and `run(args) -> int | None`, and is a thin wrapper
over the public Python function of the same name. Only the chosen verb's
module is imported, so `obliviate --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

import obliviate  # sets OMP_WAIT_POLICY before anything imports torch
from obliviate import ObliviateError

# verb -> (module under obliviate.commands, or a full dotted module path, one-line help)
VERBS = {
    "world": ("world", "write the offline synthetic fictitious-author world (TOFU schema)"),
    "init-model": ("init_model", "create a tiny Llama base model with a tokenizer trained on a world"),
    "finetune": ("finetune", "fine-tune a model on QA splits (answer-only loss): target / retain models"),
    "unlearn": ("unlearn", "unlearn a forget split with a composed recipe, e.g. npo+gd+sam"),
    "tune": ("tune", "find a recipe's operating point with Optuna: search space, objective, pruning on the probe"),
    "eval": ("eval", "evaluate a model with the full metric suite"),
    "attack": ("attack", "attack an unlearned model to test that forgetting holds (`obliviate attack --help`)"),
    "demo": ("demo", "the offline demo: world, models, unlearning, evaluation, attacks, report card"),
    "reproduce": ("reproduce", "the papers' protocol on a pretrained model (SmolLM2-135M): do their claims hold?"),
    "report": ("report", "rebuild a report card from a saved run directory"),
    "steal": ("obliviate.classifier.commands.steal", "DFHL-RS hard-label robustness stealing of an image classifier"),
    "invert": ("obliviate.classifier.commands.invert", "PLG-MI model inversion of an image classifier"),
    "continual": ("continual", "continual unlearning: forget requests one after another, evaluated after each"),
    "realworld": ("realworld", "real-world unlearning of a pretrained model's own knowledge (countryinfo probes)"),
    "ls": ("ls", "list the registries: objectives, regularisers, smoothers, metrics"),
    "bench": ("bench", "print speed and memory figures"),
    "config": ("config", "list the example configs shipped with the package, or copy one out (ls | cp NAME [DEST])"),
}


def _module(verb: str):
    name = VERBS[verb][0]
    return importlib.import_module(name if "." in name else f"obliviate.commands.{name}")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obliviate", description=obliviate.__doc__)
    parser.add_argument("--version", action="version", version=f"obliviate {obliviate.__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_, help_) in VERBS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == verb:
            _module(name).add_arguments(p)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; `key=value` overrides may sit anywhere (before, between or after flags)."""
    verb = next((a for a in argv if not a.startswith("-")), None)
    verb = verb if verb in VERBS else None
    parser = build_parser(verb)
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides"):
        overrides = [a for a in extra if "=" in a and not a.startswith("-")]
        args.overrides = list(args.overrides or []) + overrides
        extra = [a for a in extra if a not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def say(verb: str, kind: str, message: object) -> None:
    """One line on stderr, above any open progress bar (tqdm.write clears and redraws the bars)."""
    from tqdm import tqdm

    tqdm.write(f"obliviate {verb}: {kind}: {' '.join(str(message).strip().splitlines())}", file=sys.stderr)


def one_line_warnings(verb: str) -> None:
    """Warnings (ours and the libraries') print as one line each, without a source path or a code line."""
    warnings.showwarning = lambda message, *_, **__: say(verb, "warning", message)


def main(argv: list[str] | None = None) -> int:
    from obliviate.rundir import close_progress_bars

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.verb is None:
        build_parser().print_help()
        return 2
    shown = warnings.showwarning
    one_line_warnings(args.verb)
    try:
        code = _module(args.verb).run(args)
    except ObliviateError as e:
        close_progress_bars()
        say(args.verb, "error", e)
        return 2
    except KeyboardInterrupt:
        close_progress_bars()
        say(args.verb, "interrupted", "finished stages are kept")
        return 130
    finally:
        warnings.showwarning = shown
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
