"""Scenario fixtures: a micro target finetuned on the tiny world (session, ~10 s)."""

import pytest


@pytest.fixture(scope="session")
def unlearn_target_dir(base_dir, world_dir, tmp_path_factory):
    from obliviate.data.loading import load_split
    from obliviate.models.finetune import FinetuneConfig, finetune
    from obliviate.models.loading import load_model, save_model

    model, tok = load_model(base_dir)
    finetune(model, tok, load_split(world_dir, "full+world_facts"), FinetuneConfig(epochs=30, lr=3e-3, batch_size=16),
             progress=False)
    return save_model(model, tok, tmp_path_factory.mktemp("scenario_models") / "target", extra={"size": "micro"})
