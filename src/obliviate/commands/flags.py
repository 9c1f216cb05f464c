"""The flags several verbs share, spelled once (docs/cli.md has the table).

    add_original_model(p, "reference of npo/dpo/kl/rmu/undial", dest="ref_model", old=("--ref-model",))
    add_lora(p, "train a LoRA adapter (peft), merged at the end")
    cfg = load_config(UnlearnConfig, args.config, args.overrides, **checked(args.overrides, lora=args.lora))

A renamed flag keeps its old spelling as a hidden alias: it still works, and `obliviate` prints one line
"--ref-model is deprecated: use --original-model" (once per spelling) before the verb runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from obliviate import ObliviateError

_UNSET = object()
# config field -> its flag where the names differ (for the conflict message)
FLAG_OF = {"finetune_lora": "lora", "base_model": "model", "model_args": "model-args"}


class _Renamed(argparse.Action):
    """An old spelling: stores into the new flag's dest and records (old, new) on the namespace for one warning."""

    new = ""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        seen = list(getattr(namespace, "deprecated", None) or [])
        if option_string not in [old for old, _ in seen]:
            seen.append((option_string, self.new))
        namespace.deprecated = seen


def renamed(p, old: str, new: str, dest: str, *, const: Any = _UNSET, **kw) -> None:
    """Accept `old` as a deprecated spelling of `new` (hidden from --help). `const`: a flag without a value
    (e.g. --full-finetune = --no-lora stores False)."""
    action = type("Renamed", (_Renamed,), {"new": new})
    if const is not _UNSET:
        p.add_argument(old, dest=dest, action=action, nargs=0, const=const, help=argparse.SUPPRESS)
    else:
        p.add_argument(old, dest=dest, action=action, help=argparse.SUPPRESS, **kw)


def add_original_model(p, help_: str, *, dest: str = "original", old: tuple[str, ...] = ()) -> None:
    """--original-model: the model before unlearning (NPO/DPO/KL reference, Cosine-Similarity reference, an
    attack's original), whatever the verb uses it for."""
    p.add_argument("--original-model", dest=dest, default=None, metavar="MODEL",
                   help=f"the model before unlearning: {help_}")
    for spelling in old:
        renamed(p, spelling, "--original-model", dest)


def add_lora(p, help_: str, *, old_negation: str | None = None) -> None:
    """--lora / --no-lora (≡ lora=true / lora=false); unset: the config's value."""
    p.add_argument("--lora", action=argparse.BooleanOptionalAction, default=None,
                   help=f"{help_} (--no-lora: every weight; same as lora=true / lora=false)")
    if old_negation:
        renamed(p, old_negation, "--no-lora", "lora", const=False)


def checked(overrides: list[str] | None, **flags: Any) -> dict[str, Any]:
    """`flags` (None = not given), after checking that no `key=value` override names the same field with
    another value (`--lora lora=false` is a one-line error: a setting the user gave is a setting used)."""
    from obliviate.config import _coerce, parse_overrides

    given = parse_overrides(overrides)
    for key, value in flags.items():
        if value is None or key not in given or not isinstance(value, (bool, int, float, str)):
            continue
        if _coerce(key, given[key], type(value)) != value:
            name = FLAG_OF.get(key, key).replace("_", "-")
            flag = f"--{name}" if not isinstance(value, bool) or value else f"--no-{name}"
            raise ObliviateError(f"{flag} and {key}={given[key]} conflict: give one of them")
    return flags

