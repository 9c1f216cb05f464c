"""`keep_freed_memory`: freed tensors stay in glibc's heap, so allocating again touches no new pages."""

import os
import subprocess
import sys

import pytest

import obliviate
from obliviate import HEAP_ENV, ObliviateError, keep_freed_memory

PROBE = """
import resource, obliviate, torch
applied = obliviate.keep_freed_memory()
faults = []
for step in range(2):  # a step's tensors (8 × 16 MiB) allocated, written, freed; then the next step's
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    xs = [torch.empty(2 ** 22 + 1000 * j) for j in range(8)]
    [x.fill_(1) for x in xs]
    small = torch.empty(100)  # allocated after them, as the step's bookkeeping is
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    del xs
print(applied, faults[1])
"""


def _second_step_faults(heap: str) -> tuple[str, int]:
    env = {**os.environ, HEAP_ENV: heap}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()[-2:]
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_heap_serves_the_next_step_without_page_faults():
    applied, released = _second_step_faults("release")
    assert applied == "False" and released > 20_000  # 128 MiB given back on free, faulted in again (32 768 pages)
    applied, kept = _second_step_faults("keep")
    assert applied == "True" and kept < released / 4


def test_heap_setting_is_checked(monkeypatch):
    monkeypatch.setenv(HEAP_ENV, "never")
    with pytest.raises(ObliviateError, match="OBLIVIATE_HEAP='never'"):
        keep_freed_memory()
    monkeypatch.setenv(HEAP_ENV, "release")
    assert keep_freed_memory() is False
    assert obliviate.keep_freed_memory is keep_freed_memory
