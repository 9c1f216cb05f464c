"""Composable unlearning: forget objective + retain regulariser + smoothing (SPEC §1).

    from obliviate.unlearn import unlearn, UnlearnConfig
    model, log = unlearn(model, tok, forget, retain, UnlearnConfig(recipe="npo+gd+sam"))
"""

from obliviate.unlearn.config import UnlearnConfig
from obliviate.unlearn.loop import unlearn
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.recipe import parse_recipe
from obliviate.unlearn.regularizers import REGULARIZERS
from obliviate.unlearn.smoothing import SMOOTHERS

__all__ = ["unlearn", "UnlearnConfig", "OBJECTIVES", "REGULARIZERS", "SMOOTHERS", "parse_recipe"]
