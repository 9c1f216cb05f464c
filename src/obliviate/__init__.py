"""obliviate: remove chosen knowledge from a language model, prove it is gone, attack it to show it stays gone."""

import logging
import os
import sys
import types

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


HEAP_ENV = "OBLIVIATE_HEAP"  # "release": leave glibc malloc's defaults (freed memory goes back to the system)


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for the next allocations: blocks up to 32 MiB come from its heap from
    the start (M_MMAP_THRESHOLD, otherwise raised only as blocks are freed) and the heap is not trimmed below
    2 GiB of free top (M_TRIM_THRESHOLD, otherwise ≤ 64 MiB). A training step frees its activations and gradients
    and the next step allocates them again: with the defaults they were unmapped and page-faulted in again,
    ≈ 1 s of system time per SmolLM2 npo+gd step on a 2-core VM (docs/speed.md). Resident memory stays near its
    peak until exit. Called by the CLI and the bench workers (the process is theirs); `OBLIVIATE_HEAP=release`
    leaves malloc's defaults. Returns whether it applied (not on a non-glibc C library)."""
    heap = os.environ.get(HEAP_ENV, "keep")
    if heap not in ("keep", "release"):
        raise ObliviateError(f"{HEAP_ENV}={heap!r}: expected 'keep' (the default) or 'release'")
    if heap == "release":
        return False
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 * 2 ** 20)) and bool(mallopt(m_trim_threshold, 2 ** 31 - 1))


# The Python API (obliviate/api.py), loaded on first use (PEP 562) so that `import obliviate` stays cheap and never
# imports torch. `unlearn`, `evaluate` and `attack` name both an API function and a subpackage: the package
# attribute is always the function (a `_Verb`), which hands every other attribute to the subpackage, so
# `obliviate.unlearn(...)`, `from obliviate import unlearn` and `obliviate.unlearn.loop.unlearn` all work.
API = ("load_model", "load_benchmark", "unlearn", "evaluate", "attack",
       "BenchmarkData", "UnlearnResult", "EvalResult", "AttackResult")
SUBPACKAGE_VERBS = ("unlearn", "evaluate", "attack")
__all__ = ["ObliviateError", *API]


def _api():
    import importlib

    return importlib.import_module("obliviate.api")  # by name: the base package imports no layer (pyproject)


def _subpackage(name: str):
    import importlib

    return importlib.import_module(f"obliviate.{name}")


class _Verb:
    """`obliviate.<name>`: calls the API function `obliviate.api.<name>`; any other attribute is the subpackage's
    (`obliviate.unlearn.loop`, `obliviate.evaluate.METRICS`), set and deleted there too (monkeypatch)."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def __call__(self, *args, **kwargs):
        return getattr(_api(), self._name)(*args, **kwargs)

    @property
    def __wrapped__(self):  # inspect.signature / help follow it to the function
        return getattr(_api(), self._name)

    @property
    def __doc__(self):
        return getattr(_api(), self._name).__doc__

    def __getattr__(self, attr):
        return getattr(_subpackage(self._name), attr)

    def __setattr__(self, attr, value):
        setattr(_subpackage(self._name), attr, value)

    def __delattr__(self, attr):
        delattr(_subpackage(self._name), attr)

    def __dir__(self):
        return sorted(set(dir(_subpackage(self._name))) | {"__call__", "__doc__", "__wrapped__"})

    def __repr__(self):
        return f"<obliviate.{self._name}: the function obliviate.api.{self._name}, and the subpackage's attributes>"


_VERBS = {name: _Verb(name) for name in SUBPACKAGE_VERBS}


class _Package(types.ModuleType):
    """The package module: the import system's binding of a subpackage to its parent (`obliviate.unlearn =
    <module>`, done when the subpackage is first imported) is left out for the three verbs, so the attribute
    stays the verb; the subpackage itself is in sys.modules as usual."""

    def __setattr__(self, name, value):
        if name in _VERBS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in _VERBS:
        return _VERBS[name]
    if name in API:
        return getattr(_api(), name)
    raise AttributeError(f"module 'obliviate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(API))


sys.modules[__name__].__class__ = _Package
