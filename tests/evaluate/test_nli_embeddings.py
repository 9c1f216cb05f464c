"""NLI (Entailment Score) with a local randomly-initialised classifier, and the bundled sentence embedder."""

import pytest

from obliviate import ObliviateError
from obliviate.evaluate import EvalConfig, evaluate

LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}


def test_load_nli_and_labels(make_nli_dir, tmp_path):
    from obliviate.evaluate.nli import load_nli, nli_labels

    nli = load_nli(str(make_nli_dir(tmp_path / "nli")))
    assert nli.entailment_id == 0
    labels = nli_labels(nli, ["The capital is Paris.", "A b c."], ["Paris is the capital.", "x"], batch_size=1)
    assert len(labels) == 2 and set(labels) <= set(LABELS.values())
    assert labels == nli_labels(nli, ["The capital is Paris.", "A b c."], ["Paris is the capital.", "x"])


def test_nli_without_entailment_label_is_an_error(make_nli_dir, tmp_path):
    from obliviate.evaluate.nli import load_nli

    with pytest.raises(ObliviateError, match="entailment"):
        load_nli(str(make_nli_dir(tmp_path / "nli", {0: "yes", 1: "no"})))
    with pytest.raises(ObliviateError, match="cannot load NLI model"):
        load_nli(str(tmp_path / "missing"))


def test_entailment_direction_and_rouge_floor(target, world_dir, target_results, tmp_path, monkeypatch):
    """Forget: premise = generation, hypothesis = truth; retain-type: premise = truth, hypothesis = generation.
    Items under the ROUGE floor never reach the NLI model and count as not entailed. A stub NLI labels the
    forget split 'entailment' and the rest 'neutral': ES(forget) = share of items at or above the floor,
    ES(retain) = 0. With ES available, MU-18 (12 values here) and Forget Efficacy are computed."""
    from obliviate.evaluate import nli as nli_mod
    from obliviate.evaluate.nli import NLIModel

    calls = []

    def stub(nli, premises, hypotheses, **k):
        calls.append(list(zip(premises, hypotheses)))
        return ["entailment" if len(calls) == 1 else "neutral"] * len(premises)  # forget is evaluated first

    monkeypatch.setattr(nli_mod, "nli_labels", stub)
    model, tok = target
    fake = NLIModel(None, None, LABELS, 0, "stub")
    r = evaluate(model, tok, world_dir, EvalConfig(max_new_tokens=24, rouge_floor=0.1), nli=fake,
                 before_results=target_results, out=tmp_path / "nli", progress=False)
    for role, call in zip(("forget", "retain", "world_facts"), calls, strict=True):
        kept = [it for it in r["splits"][role]["items"] if it["rouge_l_recall"] >= 0.1]
        expect = [(it["generation"], it["answer"]) if role == "forget" else (it["answer"], it["generation"])
                  for it in kept]
        assert call == expect
    forget = r["splits"]["forget"]
    assert forget["means"]["entailment_score"] == pytest.approx(
        sum(it["rouge_l_recall"] >= 0.1 for it in forget["items"]) / forget["n"])
    assert r["splits"]["retain"]["means"]["entailment_score"] == 0.0
    agg = r["aggregates"]
    assert agg["mu18"] == 0.0 and agg["mu18_n"] == 12  # retain ES = 0 → harmonic mean 0
    assert agg["forget_efficacy"] == pytest.approx(1 - sum(agg["forget_efficacy_parts"].values()) / 5)
    assert "entailment_score" not in r["not_computed"]


def test_bundled_embedder_cosine():
    """Identical sentences → 1; a paraphrase is closer than an unrelated sentence; empty generation → 0."""
    from obliviate.evaluate.embeddings import cosine_similarities, load_embedder

    emb = load_embedder()
    sims = cosine_similarities(emb, ["The capital is Paris.", "Paris is the capital city.", "I like green tea.", ""],
                               ["The capital is Paris."] * 4)
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    assert sims[1] > sims[2]
    assert sims[3] == 0.0
    with pytest.raises(ObliviateError, match="cannot load sentence-embedding"):
        load_embedder("/nonexistent/embedder")
