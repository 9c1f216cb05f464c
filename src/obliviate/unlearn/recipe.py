"""Recipe names: `npo+gd+sam` = forget objective + optional retain regulariser + optional smoothing.

    parse_recipe("npo+gd+sam")  # {'objective': 'npo', 'regularizer': 'gd', 'smoothing': 'sam'}

The name is split on `+` and every piece must be an exact key of one of the three
registries; nothing is matched by substring. An unknown piece, a missing objective,
or two pieces of the same kind (two objectives, two smoothers) is a one-line error
that lists what exists.
"""

from __future__ import annotations

from obliviate import ObliviateError
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.regularizers import REGULARIZERS
from obliviate.unlearn.smoothing import SMOOTHERS

KINDS = {"objective": OBJECTIVES, "regularizer": REGULARIZERS, "smoothing": SMOOTHERS}


def valid_parts() -> str:
    return "; ".join(f"{kind}: {', '.join(reg)}" for kind, reg in KINDS.items())


def parse_recipe(name: str) -> dict[str, str | None]:
    """Split a recipe name into {'objective', 'regularizer', 'smoothing'} (the latter two may be None)."""
    if not isinstance(name, str) or not name.strip():
        raise ObliviateError(f"recipe {name!r} is empty; combine {valid_parts()}")
    out: dict[str, str | None] = {"objective": None, "regularizer": None, "smoothing": None}
    for piece in name.strip().lower().split("+"):
        kind = next((k for k, reg in KINDS.items() if piece in reg), None)
        if kind is None:
            raise ObliviateError(f"recipe {name!r}: unknown part {piece!r}; valid parts are {valid_parts()}")
        if out[kind] is not None:
            raise ObliviateError(f"recipe {name!r}: two {kind} parts ({out[kind]} and {piece}); "
                                 f"a recipe has one objective, at most one regularizer and one smoothing")
        out[kind] = piece
    if out["objective"] is None:
        raise ObliviateError(f"recipe {name!r}: no forget objective; start with one of {', '.join(OBJECTIVES)}")
    return out


def recipe_name(objective: str, regularizer: str | None = None, smoothing: str | None = None) -> str:
    return "+".join(p for p in (objective, regularizer, smoothing) if p)
