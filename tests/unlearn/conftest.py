"""Unlearning fixtures: the micro target model (`unlearn_target_dir`, root conftest) loaded fresh per test."""

import pytest


@pytest.fixture
def target(unlearn_target_dir):
    from obliviate.models.loading import load_model

    return load_model(unlearn_target_dir)


@pytest.fixture(scope="session")
def splits(world_dir):
    from obliviate.data.loading import load_split

    return load_split(world_dir, "forget10"), load_split(world_dir, "retain90")


@pytest.fixture(scope="session")
def random_micro(base_dir):
    """The untrained micro model (fast unit tests of gradients); tests must not modify it."""
    from obliviate.models.loading import load_model

    return load_model(base_dir)
