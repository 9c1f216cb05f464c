"""The black-box target as the attacker sees it: top-1 labels only, every query counted."""

from __future__ import annotations

import torch
import torch.nn as nn

from obliviate import ObliviateError


class HardLabelOracle:
    """`oracle(x) -> labels (N,) int64`; each image in `x` costs one query.

    The wrapped model is kept private (`_model`); no logits, probabilities or gradients leave the
    oracle. `budget` (None = unlimited) is enforced before the model runs: a call that would exceed it
    raises and answers nothing.
    """

    def __init__(self, model: nn.Module, *, budget: int | None = None, batch_size: int = 512):
        if budget is not None and budget <= 0:
            raise ObliviateError(f"query budget must be positive, got {budget}")
        self._model = model.eval()
        self.budget = budget
        self.queries = 0
        self.calls = 0
        self._batch_size = batch_size

    @property
    def device(self) -> torch.device:
        """Where the oracle answers (the wrapped model's device): the attacker's models live there too."""
        return next(self._model.parameters()).device

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.queries

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ObliviateError(f"oracle expects images (N, C, H, W), got shape {tuple(x.shape)}")
        n = len(x)
        if self.budget is not None and self.queries + n > self.budget:
            raise ObliviateError(f"query budget exhausted: {self.queries} used + {n} asked > {self.budget}")
        self.queries += n
        self.calls += 1
        x = x.detach().to(self.device).clamp(0, 1)
        if not n:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            return torch.cat([self._model(x[i: i + self._batch_size]).argmax(1) for i in range(0, n, self._batch_size)])
