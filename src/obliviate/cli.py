"""The `obliviate` command: one subcommand per pipeline verb.

Each verb lives in `obliviate/commands/<verb>.py` (the classifier verbs in
`obliviate/classifier/commands/<verb>.py`) with two functions,
`add_arguments(parser)` and `run(args) -> int | None`, and is a thin wrapper
over the public Python function of the same name. Only the chosen verb's
module is imported, so `obliviate --help` stays fast.

Global flags, before or after the verb (docs/cli.md): `--quiet` (no progress bars, no info lines; warnings and
errors still print, one line each on stderr), `--json` (one JSON object summarising the run on stdout, everything
else on stderr: `run` returns that summary as a dict), `--print-config` (the resolved config as YAML, nothing run:
the verb's `resolve_config(args)`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import obliviate  # sets OMP_WAIT_POLICY before anything imports torch
from obliviate import ObliviateError, keep_freed_memory

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


# global flags: spelling -> (namespace attribute, help); taken out of the command line wherever they sit
GLOBAL_FLAGS = {
    "--quiet": ("quiet", "no progress bars and no info lines (warnings and errors still print, one line each)"),
    "--json": ("json", "print one JSON object summarising the run on stdout (everything else goes to stderr)"),
    "--print-config": ("print_config", "print the resolved config as YAML and exit without running anything "
                                       "(defaults < preset < --config file < key=value < flags)"),
}
QUIET = False  # --quiet: `say` prints warnings and errors only


def _module(verb: str):
    name = VERBS[verb][0]
    return importlib.import_module(name if "." in name else f"obliviate.commands.{name}")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obliviate", description=obliviate.__doc__)
    parser.add_argument("--version", action="version", version=f"obliviate {obliviate.__version__}")
    _add_global_flags(parser)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_, help_) in VERBS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == verb:
            _module(name).add_arguments(p)
            _add_global_flags(p, module=_module(name))
    return parser


def _add_global_flags(p: argparse.ArgumentParser, module=None) -> None:
    """For --help only: `parse` takes these flags out of the command line before argparse sees it."""
    for flag, (_, help_) in GLOBAL_FLAGS.items():
        if flag != "--print-config" or module is None or hasattr(module, "resolve_config"):
            p.add_argument(flag, action="store_true", help=help_)


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; `key=value` overrides may sit anywhere (before, between or after flags)."""
    given = {GLOBAL_FLAGS[a][0] for a in argv if a in GLOBAL_FLAGS}
    argv = [a for a in argv if a not in GLOBAL_FLAGS]
    verb = next((a for a in argv if not a.startswith("-")), None)
    verb = verb if verb in VERBS else None
    parser = build_parser(verb)
    args, extra = parser.parse_known_args(argv)
    for _, (name, _) in GLOBAL_FLAGS.items():
        setattr(args, name, name in given)
    if args.print_config and verb and not hasattr(_module(verb), "resolve_config"):
        parser.error(f"{verb} has no config to print (--print-config)")
    if extra and hasattr(args, "overrides"):
        overrides = [a for a in extra if "=" in a and not a.startswith("-")]
        args.overrides = list(args.overrides or []) + overrides
        extra = [a for a in extra if a not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def say(verb: str, kind: str, message: object) -> None:
    """One line on stderr, above any open progress bar (tqdm.write clears and redraws the bars); with --quiet,
    warnings and errors only."""
    from tqdm import tqdm

    if QUIET and kind not in ("warning", "error", "interrupted"):
        return
    tqdm.write(f"obliviate {verb}: {kind}: {' '.join(str(message).strip().splitlines())}", file=sys.stderr)


def one_line_warnings(verb: str) -> None:
    """Warnings (ours and the libraries') print as one line each, without a source path or a code line."""
    warnings.showwarning = lambda message, *_, **__: say(verb, "warning", message)


def main(argv: list[str] | None = None) -> int:
    from obliviate.config import jsonable
    from obliviate.rundir import close_progress_bars

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.verb is None:
        build_parser().print_help()
        return 2
    global QUIET
    shown, QUIET = warnings.showwarning, args.quiet
    one_line_warnings(args.verb)
    for old, new in getattr(args, "deprecated", None) or []:
        say(args.verb, "warning", f"{old} is deprecated: use {new}")
    try:
        keep_freed_memory()  # the process is the CLI's: freed tensors stay in the heap for the next step
        if args.print_config:
            sys.stdout.write(config_yaml(_module(args.verb).resolve_config(args), getattr(args, "model", None)))
            return 0
        with _console(args.quiet, args.json) as stdout:
            result = _module(args.verb).run(args)
        if args.json:
            summary = result if isinstance(result, dict) else {}
            stdout.write(json.dumps(jsonable({"verb": args.verb, **summary}, other=str), allow_nan=False) + "\n")
            stdout.flush()
    except ObliviateError as e:
        close_progress_bars()
        say(args.verb, "error", e)
        return 2
    except KeyboardInterrupt:
        close_progress_bars()
        say(args.verb, "interrupted", "finished stages are kept")
        return 130
    finally:
        warnings.showwarning, QUIET = shown, False
    return 0 if isinstance(result, dict) else int(result or 0)


def config_yaml(config, model: str | None = None) -> str:
    """A resolved config (a dataclass, or {name: dataclass} for a verb with several) as YAML. A config whose lr /
    epochs / batch size default per model (`UnlearnConfig.hyperparams`) shows the values `model` will get, so the
    YAML given back as `--config` runs the same."""
    import yaml

    def plain(c):
        if not dataclasses.is_dataclass(c):
            return c
        d = dataclasses.asdict(c)
        if hasattr(c, "hyperparams"):
            d.update(dataclasses.asdict(c.hyperparams(_size_of(model))))
        return d

    data = {k: plain(v) for k, v in config.items()} if isinstance(config, dict) else plain(config)
    return yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False, allow_unicode=True)


def _size_of(model: str | None) -> str | None:
    """The size name of a tiny obliviate model directory (its obliviate.json, read without loading the model)."""
    from obliviate.reader import read_json_object

    f = Path(model) / "obliviate.json" if model else None
    return read_json_object(f).get("size") if f is not None and f.is_file() else None


@contextlib.contextmanager
def _console(quiet: bool, as_json: bool):
    """--json: the verb's prints (and its child processes') go to stderr; --quiet: nowhere, with every
    progress bar off. Yields the real stdout, for the JSON summary once the block has ended."""
    if not (quiet or as_json):
        yield sys.stdout
        return
    import tqdm

    real = sys.stdout  # written to after the fd is restored
    real.flush()
    saved_fd, saved_env = os.dup(1), {k: os.environ.get(k) for k in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    sink = os.open(os.devnull, os.O_WRONLY) if quiet else None  # an fd: prints of this process go to a StringIO
    init = tqdm.std.tqdm.__init__
    try:
        os.dup2(sink if quiet else 2, 1)
        if quiet:
            os.environ.update(TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")  # child processes too
            tqdm.std.tqdm.__init__ = lambda self, *a, **kw: init(self, *a, **{**kw, "disable": True})
        with contextlib.redirect_stdout(io.StringIO() if quiet else sys.stderr):
            yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        tqdm.std.tqdm.__init__ = init
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if sink is not None:
            os.close(sink)


if __name__ == "__main__":
    sys.exit(main())
