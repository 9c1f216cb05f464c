"""obliviate: remove chosen knowledge from a language model, prove it is gone, attack it to show it stays gone."""

import logging
import os

# Must be set before torch is imported: OpenMP's default busy-wait makes CPU training
# on 2 cores ~7x slower and erratic.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# transformers imports torchao whenever it is installed (the `quantize` extra): silence its notes about CUDA-only
# kernels that cannot load on a CPU machine, and torch's deprecation notes on its enums
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

__version__ = "0.1.0"


class ObliviateError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
