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
