import obliviate  # noqa: F401  (OMP_WAIT_POLICY before torch)
import pytest
import torch


@pytest.fixture(autouse=True)
def _small_torch():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield
