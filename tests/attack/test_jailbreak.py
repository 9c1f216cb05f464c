import json
import math

import pytest
import torch

from obliviate import ObliviateError
from obliviate.attack.jailbreak import (JailbreakConfig, _objective, _prepare, allowed_tokens, attacked_question,
                                        jailbreak, match_loss, search, split_prompt)
from obliviate.cli import main
from obliviate.data.format import encode_prompt, encode_qa
from obliviate.data.loading import load_split
from obliviate.evaluate.passes import forward_scores
from obliviate.models.loading import load_model


def test_match_loss_by_hand():
    """Row 0: |(3,4)-(1,1)| = |(2,3)| = √13 and |(0,0)-(0,1)| = 1 → (√13+1)/2;
    row 1: |(1,0)-(1,1)| = |(0,-1)| = 1 and |(0,2)-(0,1)| = 1 → 1."""
    hidden = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]]])
    ref = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    torch.testing.assert_close(match_loss(hidden, ref), torch.tensor([(math.sqrt(13) + 1) / 2, 1.0]))


def test_cached_objective_equals_full_forward_and_enhanced_term(base_dir, attack_target, world_dir):
    """The KV-cached candidate score is the answer NLL_mean of the full spliced sequence, and the enhanced term
    is λ · mean over answer-predicting positions of ‖h_L(attacked) − h_L^orig(clean prompt)‖₂, computed here
    by hand from plain uncached forward passes of both models."""
    model, tok = load_model(base_dir)  # plays the unlearned model
    original, _ = attack_target
    recs = load_split(world_dir, "forget10")[:2]
    for position in ("prefix", "suffix"):
        cfg = JailbreakConfig(tokens=4, k=2, position=position, match_layer=1, match_weight=0.7)
        allowed = allowed_tokens(tok, model.get_input_embeddings().weight.shape[0])
        adv, targets = _prepare(model, tok, recs, cfg, allowed, original)
        cands = torch.tensor([adv, [allowed.nonzero()[5].item()] + adv[1:]])
        with torch.no_grad():
            for t, r in zip(targets, recs):
                loss, nll = _objective(model, t, cfg, adv_ids=cands)
                for b in range(2):
                    ids = torch.tensor([t.head + cands[b].tolist() + t.tail + t.answer])
                    out = model(input_ids=ids, output_hidden_states=True)
                    a = len(t.answer)
                    logp = torch.log_softmax(out.logits[0, -(a + 1):-1].float(), -1)
                    want_nll = -logp.gather(-1, torch.tensor(t.answer)[:, None]).mean()
                    clean = torch.tensor([encode_qa(tok, r["question"], r["answer"])["input_ids"]])
                    ref = original(input_ids=clean, output_hidden_states=True).hidden_states[1][0, -(a + 1):-1]
                    dist = (out.hidden_states[1][0, -(a + 1):-1] - ref).norm(dim=-1).mean()
                    torch.testing.assert_close(nll[b], want_nll, atol=1e-5, rtol=1e-5)
                    torch.testing.assert_close(loss[b], want_nll + 0.7 * dist, atol=1e-5, rtol=1e-5)
        if position == "prefix":  # every prompt shares the template head: one cache
            assert targets[0].cache is targets[1].cache


def test_search_raises_planted_answer_likelihood_with_valid_tokens_deterministically(attack_target, world_dir):
    """Plant an answer the model was never taught for two questions: after the search, its NLL under the attacked
    prompt (scored by the evaluation's forward pass) must fall clearly below the unattacked prompt's."""
    model, tok = attack_target
    recs = [{"question": r["question"], "answer": "Jeanne Green."} for r in load_split(world_dir, "forget10")[:2]]
    cfg = JailbreakConfig(tokens=6, k=2, steps=25, search_width=48, topk=32, seed=0)
    result = search(model, tok, recs, cfg, progress=False)
    ids = result["ids"]
    clean = forward_scores(model, tok, [(r["question"], r["answer"]) for r in recs])
    attacked = forward_scores(model, tok, [(attacked_question(tok, r["question"], ids, "prefix"), r["answer"])
                                           for r in recs])
    clean_nll = sum(x["nll_mean"] for x in clean) / 2
    attacked_nll = sum(x["nll_mean"] for x in attacked) / 2
    assert attacked_nll < clean_nll - 0.3, (clean_nll, attacked_nll)
    assert result["curve"][-1]["best_loss"] < result["curve"][0]["loss"]
    # valid tokens: not special, printable, and the string re-tokenizes to itself inside every attacked prompt
    allowed = allowed_tokens(tok, model.get_input_embeddings().weight.shape[0])
    assert len(ids) == 6 and all(allowed[i] for i in ids) and not set(ids) & set(tok.all_special_ids)
    for r in recs:
        head, tail = split_prompt(tok, r["question"], ids, "prefix")
        assert encode_prompt(tok, attacked_question(tok, r["question"], ids, "prefix")) == head + ids + tail
    again = search(model, tok, recs, cfg, progress=False)
    assert again["ids"] == ids and [p["loss"] for p in again["curve"]] == [p["loss"] for p in result["curve"]]


def test_config_and_model_errors(attack_target, world_dir):
    model, tok = attack_target
    recs = load_split(world_dir, "forget10")[:1]
    with pytest.raises(ObliviateError, match="position must be one of"):
        JailbreakConfig(position="middle")
    with pytest.raises(ObliviateError, match="needs the original model"):
        search(model, tok, recs, JailbreakConfig(match_layer=1, steps=1), progress=False)
    with pytest.raises(ObliviateError, match="without match_layer"):
        search(model, tok, recs, JailbreakConfig(steps=1), original=model, progress=False)
    with pytest.raises(ObliviateError, match="> the model's 2 layers"):
        search(model, tok, recs, JailbreakConfig(match_layer=3, steps=1), original=model, progress=False)


def test_jailbreak_reports_seen_and_unseen_items_with_and_without_string(attack_target, world_dir, tmp_path):
    model, tok = attack_target
    cfg = JailbreakConfig(tokens=4, k=4, steps=2, search_width=16, topk=16, max_new_tokens=8, time_limit=600)
    result = jailbreak(model, tok, world_dir, cfg, out=tmp_path, progress=False)
    saved = json.loads((tmp_path / "jailbreak.json").read_text())
    assert saved["string"]["token_ids"] == result["string"]["token_ids"]
    assert saved["search"]["steps_run"] == 2 and saved["search"]["stopped"] == "steps"
    assert {i["index"] for i in saved["items"] if i["seen"]} == set(saved["attacked_items"])
    assert saved["metrics"]["seen"]["n"] == 4 and saved["metrics"]["unseen"]["n"] == 4
    for group in ("seen", "unseen"):
        for cond in ("with", "without"):
            assert 0 < saved["metrics"][group][cond]["prob"] <= 1
    text = result["string"]["text"]
    attacked = json.loads((tmp_path / "attacked_forget10_perturbed.json").read_text())
    assert all(r["question"].startswith(text + " ") for r in attacked)
    assert all(i["question"].startswith(text + " ") for i in saved["items"])
    with pytest.raises(ObliviateError, match="must be smaller than the forget split"):  # some items stay unseen
        jailbreak(model, tok, world_dir, JailbreakConfig(k=8, steps=1), progress=False)


def test_cli_jailbreak_and_mia(attack_target_dir, base_dir, world_dir, tmp_path, capsys):
    out = tmp_path / "jb"
    assert main(["attack", "jailbreak", "--model", str(base_dir), "--data", str(world_dir), "--original-model",
                 str(attack_target_dir), "--k", "4", "--tokens", "3", "--steps", "2", "--search-width", "8",
                 "--topk", "8", "--out", str(out), "max_new_tokens=4"]) == 0
    printed = capsys.readouterr().out
    assert "enhanced: layer 1" in printed and "token ids:" in printed
    for f in ("jailbreak.json", "jailbreak.png", "run.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "run.json").read_text())["config"]["match_layer"] == 1
    assert main(["attack", "jailbreak", "--model", str(base_dir), "--data", str(world_dir), "--match-layer", "1",
                 "--k", "4", "--steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "needs the original model" in capsys.readouterr().err
    out = tmp_path / "mia"
    assert main(["attack", "mia", "--model", str(attack_target_dir), "--data", str(world_dir), "--retain-model",
                 str(base_dir), "--out", str(out)]) == 0
    assert "AUC Min-K%" in capsys.readouterr().out
    for f in ("mia.json", "mia.png", "run.json"):
        assert (out / f).is_file(), f
