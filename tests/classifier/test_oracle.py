import pytest
import torch
import torch.nn as nn

from obliviate import ObliviateError
from obliviate.classifier.oracle import HardLabelOracle


class CountingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.rows = 0

    def forward(self, x):
        self.rows += len(x)
        return self.lin(x.flatten(1))


def test_oracle_returns_only_top1_labels():
    model = CountingModel()
    oracle = HardLabelOracle(model)
    x = torch.rand(5, 1, 2, 2, requires_grad=True)
    y = oracle(x)
    assert y.dtype == torch.int64 and y.shape == (5,)
    assert not y.requires_grad and y.grad_fn is None
    assert torch.equal(y, model(x.detach()).argmax(1))
    assert not hasattr(oracle, "model")     # the model is not part of the attacker's interface


def test_oracle_counts_every_query_and_enforces_budget():
    model = CountingModel()
    oracle = HardLabelOracle(model, budget=10, batch_size=3)
    oracle(torch.rand(4, 1, 2, 2))
    oracle(torch.rand(5, 1, 2, 2))
    assert oracle.queries == 9 and oracle.calls == 2 and oracle.remaining == 1
    assert model.rows == 9                  # every queried image reached the model exactly once
    with pytest.raises(ObliviateError, match="budget"):
        oracle(torch.rand(2, 1, 2, 2))
    assert oracle.queries == 9 and model.rows == 9   # a refused call answers nothing and costs nothing
    oracle(torch.rand(1, 1, 2, 2))
    assert oracle.queries == 10


def test_oracle_rejects_bad_input():
    with pytest.raises(ObliviateError, match="budget"):
        HardLabelOracle(CountingModel(), budget=0)
    with pytest.raises(ObliviateError, match="images"):
        HardLabelOracle(CountingModel())(torch.rand(3, 4))
