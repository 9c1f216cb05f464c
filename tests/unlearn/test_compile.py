"""`compile=true`: the training forwards run through torch.compile (inductor) and give eager's numbers."""

import pytest
import torch

from obliviate.unlearn import UnlearnConfig, unlearn


def test_compiled_training_forwards_match_eager(target, splits, unlearn_target_dir, monkeypatch):
    from obliviate.models.loading import load_model

    (model, tok), (forget, retain) = target, splits
    cfg = dict(recipe="npo+gd", max_steps=2, batch_size=4, micro_batch=4, lr=1e-3)
    _, eager = unlearn(model, tok, forget, retain, UnlearnConfig(**cfg), progress=False)
    calls = []
    real = torch.compile

    def spy(m, *a, **k):  # dynamo traces the same graphs; aot_eager skips inductor's C++ build (minutes on 2 cores)
        calls.append(type(m).__name__)
        return real(m, *a, **{**k, "backend": "aot_eager"})

    monkeypatch.setattr(torch, "compile", spy)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model2, tok2 = load_model(unlearn_target_dir)
    _, compiled = unlearn(model2, tok2, forget, retain, UnlearnConfig(**cfg, compile=True), progress=False)
    assert calls == ["LlamaForCausalLM"]  # the model, compiled once
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # and its forwards went through dynamo
    for a, c in zip(eager, compiled):
        assert c["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert c["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)
    assert compiled.summary["forget_prob_after"] == pytest.approx(eager.summary["forget_prob_after"], rel=1e-4)
