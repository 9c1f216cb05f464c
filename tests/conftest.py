"""Shared fixtures: a tiny world and a micro base model, built once per test session (seconds)."""

import obliviate  # noqa: F401  (OMP_WAIT_POLICY before torch)
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    from obliviate.data.world import write_world

    return write_world(tmp_path_factory.mktemp("world"), "tiny", 0)


@pytest.fixture(scope="session")
def base_dir(world_dir, tmp_path_factory):
    from obliviate.models.init import init_model

    out = tmp_path_factory.mktemp("models") / "base"
    init_model("micro", world_dir, out, seed=0)
    return out


@pytest.fixture(scope="session")
def unlearn_target_dir(base_dir, world_dir, tmp_path_factory):
    """The micro model fine-tuned on the tiny world's full+world_facts (session, ~10 s): unlearning and attack tests."""
    from obliviate.data.loading import load_split
    from obliviate.models.finetune import FinetuneConfig, finetune
    from obliviate.models.loading import load_model, save_model

    model, tok = load_model(base_dir)
    finetune(model, tok, load_split(world_dir, "full+world_facts"), FinetuneConfig(epochs=30, lr=3e-3, batch_size=16),
             progress=False)
    return save_model(model, tok, tmp_path_factory.mktemp("unlearn_models") / "target", extra={"size": "micro"})


def _free_port() -> int:
    """A TCP port no process listens on now (the OS picks it: bind to port 0), for a launcher's rendezvous: two test
    suites running at once must not meet on a fixed port (torchrun's default 29500 or any other literal)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A free TCP port for this test's `torchrun --master-port` / `accelerate launch --main_process_port`."""
    return _free_port()


@pytest.fixture
def one_and_two_processes(tmp_path):
    """run(args) -> (one, two): `python -m obliviate *args --out tmp/two` under `accelerate launch` with two
    CPU processes (DDP over gloo, configs/accelerate/cpu_ddp.yaml), then `--out tmp/one` in one process; both
    must exit 0 (stderr's tail in the message). The multi-process training and evaluation tests share it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    ddp = Path(__file__).resolve().parents[1] / "src/obliviate/configs/accelerate/cpu_ddp.yaml"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}

    def run(args: list[str]):
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ddp),
                    "--main_process_port", str(_free_port())]
        out = []
        for name, prefix in (("two", launcher), ("one", [sys.executable])):
            r = subprocess.run([*prefix, "-m", "obliviate", *args, "--out", str(tmp_path / name)], env=env,
                               capture_output=True, text=True, timeout=900)
            assert r.returncode == 0, r.stderr[-3000:]
            out.append(r)
        return out[1], out[0]

    return run
