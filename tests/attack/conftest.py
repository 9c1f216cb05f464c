"""Attack fixtures: the micro target model that knows the tiny world (`unlearn_target_dir`, root conftest)."""

import pytest


@pytest.fixture(scope="session")
def attack_target_dir(unlearn_target_dir):
    return unlearn_target_dir


@pytest.fixture
def attack_target(attack_target_dir):
    from obliviate.models.loading import load_model

    return load_model(attack_target_dir)
