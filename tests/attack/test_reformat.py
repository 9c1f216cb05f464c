"""Reformatted questions: each builder on fixture items, letter balance over seeds, the option-text scorer against a
hand computation, and the target (knows the forget facts) beating the retain model (never saw them)."""

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import torch

from obliviate import ObliviateError
from obliviate.attack.reformat import (FORMATS, NO_PERTURBED, ReformatConfig, build_cloze, build_mcq,
                                       build_paraphrase, build_true_false, common_stem, reformat_attack,
                                       text_choice_scores)
from obliviate.data.loading import load_split

TOFU = Path(__file__).parents[1] / "fixtures" / "tofu"


def _world_items(world_dir):
    return load_split(world_dir, "forget10_perturbed")


def test_mcq_builder_keeps_every_option_and_marks_the_answer(world_dir):
    records = _world_items(world_dir)
    items = build_mcq(records, "forget", seed=0)
    for r, it in zip(records, items):
        assert sorted(it["choices"]) == sorted([r["paraphrased_answer"]] + r["perturbed_answer"])
        assert it["choices"][it["answer"]] == r["paraphrased_answer"]  # ỹ: the answer the distractors perturb
        assert it["question"] == r["question"] and it["stem"] == ""
    assert build_mcq(records, "forget", 0) == items  # fixed per seed
    assert build_mcq(records, "forget", 1) != items
    assert build_mcq([{k: v for k, v in r.items() if k != "perturbed_answer"} for r in records], "forget", 0) \
        == NO_PERTURBED


def test_letters_are_balanced_over_seeds(world_dir):
    record = _world_items(world_dir)[:1]
    counts = Counter(build_mcq(record, "forget", seed)[0]["answer"] for seed in range(600))
    assert sorted(counts) == list(range(6))
    assert all(70 <= c <= 130 for c in counts.values()), counts  # 100 expected per letter


def test_true_false_builder(world_dir):
    records = _world_items(world_dir)
    items = build_true_false(records, "forget", seed=0)
    assert len(items) == 2 * len(records)
    assert [it["answer"] for it in items] == [0, 1] * len(records)  # one true, one false statement per item
    assert all(it["choices"] == ["True", "False"] for it in items)
    r = records[0]
    assert f"Proposed answer: {r['paraphrased_answer']}\n" in items[0]["question"]
    assert any(f"Proposed answer: {p}\n" in items[1]["question"] for p in r["perturbed_answer"])


def test_cloze_builder_blanks_the_fact_in_the_trained_answer(world_dir):
    records = _world_items(world_dir)
    for r, it in zip(records, build_cloze(records, "forget", 0)):
        # "That author is Amanda Zavala." vs "That author is Lori Johnson.": the fact is "Amanda Zavala.", blanked
        # where the trained answer ("The author born in ... is Amanda Zavala.") holds it
        assert f"{it['stem']} {it['choices'][0]}" == r["answer"]
        assert it["choices"][0] in r["paraphrased_answer"] and it["answer"] == 0


def test_cloze_builder_blanks_the_fact():
    assert common_stem(["That author is Amanda Zavala.", "That author is Lori Johnson."]) == 3
    assert common_stem(["Paris.", "Lyon."]) == 0
    records = load_split(TOFU, "forget01_perturbed")
    records = [{**r, "paraphrased_answer": r["answer"]} for r in records]  # the fixture's perturbations are of it
    items = build_cloze(records, "forget", 0)
    assert items[0]["stem"] == "Carmen Montenegro writes in the genre of historical"
    assert items[0]["choices"][0] == "fiction." and set(items[0]["choices"][1:]) == {"Lima.", "poetry.", "Oslo.",
                                                                                     "drama.", "Cairo."}
    no_stem = [{"question": "q", "answer": "Paris.", "perturbed_answer": ["Lyon."]}]
    assert "shares leading words" in build_cloze(no_stem, "forget", 0)


def test_paraphrase_builder_where_the_benchmark_has_one(world_dir):
    records = _world_items(world_dir)
    items = build_paraphrase(records, "forget", 0)
    assert [it["question"] for it in items] == [r["paraphrased_question"] for r in records]
    assert [it["answer"] for it in items] == [it["answer"] for it in build_mcq(records, "forget", 0)]
    tofu = [{k: v for k, v in r.items() if k != "paraphrased_question"} for r in load_split(TOFU, "forget01_perturbed")]
    assert "no paraphrased questions" in build_paraphrase(tofu, "forget", 0)


def test_option_text_scores_match_a_hand_computation(attack_target):
    """log p(option | prompt) summed over the option's tokens, from one plain forward pass per option."""
    model, tok = attack_target
    item = {"question": "What genre does Amanda Zavala write in?", "stem": "", "choices": ["Poetry.", "Magical realism."],
            "answer": 1}
    got = text_choice_scores(model, tok, [item])[0]
    from obliviate.data.format import encode_prompt
    for choice, score in zip(item["choices"], got):
        prompt = encode_prompt(tok, item["question"])
        ans = tok(f" {choice}", add_special_tokens=False)["input_ids"]  # the plain format: a space, no EOS
        ids = torch.tensor([prompt + ans])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        hand = sum(float(logp[len(prompt) - 1 + t, a]) for t, a in enumerate(ans))
        assert score == pytest.approx(hand, abs=1e-4)


def test_shared_prompt_choice_scores_equal_the_full_pass(attack_target, world_dir, monkeypatch):
    """The options of an item share its prompt, run once with its KV cache repeated per option: every score equals
    one full (prompt + option) pass per option to 1e-5 (or 1e-6 relative: a sum of ~20 fp32 log-probs near -60 moves
    by a few ulps of 60 ≈ 4e-6 each), over MCQ (6 options) and true/false items."""
    from obliviate.evaluate import passes

    model, tok = attack_target
    records = _world_items(world_dir)
    items = build_mcq(records, "forget", 0) + build_true_false(records, "forget", 0)
    full = text_choice_scores(model, tok, items, batch_size=8, share_prompts=False)

    def boom(*args, **kwargs):
        raise AssertionError("the full pass ran: the options did not share their prompt")

    monkeypatch.setattr(passes, "score_batch", boom)
    for bs in (16, 5):  # several items per batch; an item's 6 options split over two batches
        shared = text_choice_scores(model, tok, items, batch_size=bs)
        assert [len(s) for s in shared] == [len(it["choices"]) for it in items]
        for s, f in zip(shared, full):
            assert s == pytest.approx(f, rel=1e-6, abs=1e-5)
    assert len({round(x, 3) for row in full for x in row}) > len(items)  # the options' scores differ


def _count_scoring(monkeypatch) -> list:
    """Record the model of every `score_format` call of the attack."""
    from obliviate.attack import reformat

    calls, real = [], reformat.score_format

    def counting(model, *args, **kwargs):
        calls.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(reformat, "score_format", counting)
    return calls


def test_control_models_are_scored_once_per_cache_key(attack_target, base_dir, world_dir, tmp_path, monkeypatch):
    """With eval_cache, a second attack with the same controls reads the target's scores (and gives the same
    result), while the attacked model is scored every time; another seed (other shuffles) or other weights miss."""
    from obliviate.models.loading import load_model

    model, target = load_model(base_dir), attack_target
    calls = _count_scoring(monkeypatch)
    cfg = ReformatConfig(splits=["forget", "retain"], eval_cache=str(tmp_path / "cache"))
    first = reformat_attack({"model": model, "target": target}, world_dir, cfg, progress=False)
    n = len(cfg.splits) * len(cfg.formats)  # every (split, format) of the world builds
    assert sum(m is target[0] for m in calls) == sum(m is model[0] for m in calls) == n
    calls.clear()
    again = reformat_attack({"model": model, "target": target}, world_dir, cfg, progress=False)
    assert [m is model[0] for m in calls] == [True] * n  # the attacked model only
    assert again["accuracy"] == first["accuracy"]
    calls.clear()
    reseeded = reformat_attack({"model": model, "target": target}, world_dir,
                               dataclasses.replace(cfg, seed=1), progress=False)
    # the seed reshuffles every format's options but cloze's (no options to shuffle): those miss, cloze hits
    assert sum(m is target[0] for m in calls) == n - len(cfg.splits)
    assert reseeded["accuracy"]["target"]["forget"]["cloze"] == first["accuracy"]["target"]["forget"]["cloze"]
    calls.clear()
    with torch.no_grad():
        next(target[0].parameters())[0, 0] += 1e-3  # other weights: another fingerprint
    reformat_attack({"model": model, "target": target}, world_dir, cfg, progress=False)
    assert sum(m is target[0] for m in calls) == n


def test_config_checks():
    with pytest.raises(ObliviateError, match="formats: unknown zork"):
        ReformatConfig(formats=["zork"])
    with pytest.raises(ObliviateError, match="splits: unknown"):
        ReformatConfig(splits=["world_facts"])


def test_target_recognises_forget_facts_the_retain_model_does_not(attack_target, world_dir, base_dir, tmp_path):
    from obliviate.models.finetune import FinetuneConfig, finetune
    from obliviate.models.loading import load_model

    retain = load_model(base_dir)
    finetune(*retain, load_split(world_dir, "retain90+world_facts"), FinetuneConfig(epochs=30, lr=3e-3, batch_size=16),
             progress=False)
    result = reformat_attack({"model": retain, "target": attack_target}, world_dir,
                             ReformatConfig(formats=["mcq_letter", "mcq_text", "cloze", "paraphrase"]), out=tmp_path,
                             progress=False)
    acc = result["accuracy"]
    for f in ("mcq_text", "paraphrase"):
        assert acc["target"]["forget"][f]["accuracy"] >= acc["model"]["forget"][f]["accuracy"] + 0.25, f
        assert acc["model"]["retain"][f]["accuracy"] >= 0.5, f  # the retain model knows the retain facts
    # cloze is recall: the retain model fills in the retain facts it learned, never the forget or holdout ones
    assert acc["model"]["retain"]["cloze"]["accuracy"] >= 0.25
    assert acc["model"]["forget"]["cloze"]["accuracy"] == acc["model"]["holdout"]["cloze"]["accuracy"] == 0
    assert acc["model"]["forget"]["cloze"]["chance"] == 0
    assert acc["model"]["forget"]["mcq_text"]["chance"] == pytest.approx(1 / 6)
    assert sum(result["letter_counts"]["forget"]) == 8 and (tmp_path / "reformat.json").is_file()
    assert set(FORMATS) >= set(result["formats"])
