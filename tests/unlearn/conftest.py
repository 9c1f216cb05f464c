"""Unlearning fixtures: a micro target model finetuned on the tiny world (session, ~10 s), loaded fresh per test."""

import pytest


@pytest.fixture(scope="session")
def unlearn_target_dir(base_dir, world_dir, tmp_path_factory):
    from obliviate.data.loading import load_split
    from obliviate.models.finetune import FinetuneConfig, finetune
    from obliviate.models.loading import load_model, save_model

    model, tok = load_model(base_dir)
    finetune(model, tok, load_split(world_dir, "full+world_facts"), FinetuneConfig(epochs=30, lr=3e-3, batch_size=16),
             progress=False)
    return save_model(model, tok, tmp_path_factory.mktemp("unlearn_models") / "target", extra={"size": "micro"})


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
