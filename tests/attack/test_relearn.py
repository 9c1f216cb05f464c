import pytest

from obliviate import ObliviateError
from obliviate.attack.relearn import RelearnConfig, relearn, relearn_sample
from obliviate.data.loading import load_split
from obliviate.models.finetune import FinetuneConfig, finetune
from obliviate.models.loading import load_model


def test_sample_is_fixed_per_seed_and_checked():
    assert relearn_sample(40, 8, 0) == relearn_sample(40, 8, 0)
    assert relearn_sample(40, 8, 0) != relearn_sample(40, 8, 1)
    assert len(set(relearn_sample(40, 8, 3))) == 8
    with pytest.raises(ObliviateError, match="smaller than the forget split"):
        relearn_sample(5, 8, 0)
    with pytest.raises(ObliviateError, match="smaller than the forget split"):  # issue 9: k = n leaves no unseen item
        relearn_sample(8, 8, 0)
    with pytest.raises(ObliviateError, match="steps must be a finite number in"):
        RelearnConfig(steps=[0, 5])


def test_relearning_restores_forget_probability(world_dir, base_dir, tmp_path):
    """A model that never saw the forget authors (retain-only training) plays the unlearned model:
    training on k of its forget items must raise their answer probability, step by step."""
    model, tok = load_model(base_dir)
    finetune(model, tok, load_split(world_dir, "retain90+world_facts"), FinetuneConfig(epochs=3, batch_size=16),
             progress=False)
    cfg = RelearnConfig(k=4, steps=[3, 6], lr=3e-3, batch_size=4, max_new_tokens=8)
    result = relearn(model, tok, world_dir, cfg, out=tmp_path, progress=False)
    curve = result["curve"]
    assert [p["step"] for p in curve] == [0, 3, 6]
    assert curve[-1]["prob"] > curve[0]["prob"] * 1.5
    assert curve[-1]["train_loss"] < 10 and curve[0]["train_loss"] is None
    assert (tmp_path / "relearn.json").is_file()
    assert result["attacked_items"] == relearn_sample(8, 4, 0)
    # the same attack from the same weights gives the same curve
    model2, _ = load_model(base_dir)
    finetune(model2, tok, load_split(world_dir, "retain90+world_facts"), FinetuneConfig(epochs=3, batch_size=16),
             progress=False)
    again = relearn(model2, tok, world_dir, cfg, progress=False)
    assert [p["prob"] for p in again["curve"]] == [p["prob"] for p in curve]
