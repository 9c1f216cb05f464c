"""The in-training probe (issue 23 §1): declared names, the suite's own numbers on the probe's items, a
deterministic sample, only the roles the requested metrics read."""

import math
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.evaluate import metrics as M
from obliviate.evaluate.probes import build_probe, probe_for, probe_roles
from obliviate.unlearn import UnlearnConfig


@pytest.fixture(scope="module")
def roles(world_dir):
    return probe_roles(world_dir, forget="forget10")


def test_probe_roles_and_names_are_known_before_any_model(roles):
    assert set(roles) == {"forget", "retain", "world_facts", "holdout"}  # the world has no real authors
    probe = build_probe(None, roles, size=4)
    assert {"forget_prob", "forget_truth_ratio", "retain_prob", "world_facts_prob", "holdout_nll", "mia_auc",
            "forget_gap"} <= set(probe.names)
    assert "holdout_truth_ratio" not in probe.names  # holdout: MIA only, no perturbed answers scored
    assert "forget_rouge_l_recall" in build_probe(None, roles, size=4, rouge=True).names


def test_probe_gives_the_suites_numbers_on_the_same_items(target, roles, target_results):
    """probe(model) and probe.reference(eval.json of the same model) are one computation on the same items:
    the forward stage and split means of the suite."""
    model, tok = target
    probe = build_probe(tok, roles, size=5, seed=3, rouge=True, max_new_tokens=24)
    now = probe(model)
    assert set(now) == set(probe.names) and all(v is not None for v in now.values())
    ref = probe.reference(target_results)
    for name in probe.names:
        assert now[name] == pytest.approx(ref[name], rel=1e-4, abs=1e-5), name
    # cross-role values by hand from the per-role values
    assert now["forget_gap"] == pytest.approx(now["retain_prob"] - now["forget_prob"])
    forget = target_results["splits"]["forget"]["items"]
    sampled = [next(it for it in forget if it["question"] == r["question"]) for r in probe.roles["forget"]["records"]]
    assert now["forget_prob"] == pytest.approx(sum(it["prob"] for it in sampled) / 5, rel=1e-4)
    holdout = target_results["splits"]["holdout"]["items"]
    hs = [next(it for it in holdout if it["question"] == r["question"]) for r in probe.roles["holdout"]["records"]]
    assert now["mia_auc"] == pytest.approx(M.mia_auc([it["mia"]["min_k"] for it in sampled],
                                                     [it["mia"]["min_k"] for it in hs]), abs=1e-6)


def test_probe_generates_every_role_in_one_pass(target, roles, monkeypatch):
    """rouge=True: one generation call for the forget, retain and world-facts questions (continuous batching
    across roles), none for holdout (MIA only); each role's ROUGE from its own rows."""
    from obliviate.evaluate import probes

    calls, real = [], probes.generate_roles
    monkeypatch.setattr(probes, "generate_roles", lambda m, t, asked, *a: calls.append(list(asked)) or real(m, t, asked, *a))
    model, tok = target
    now = build_probe(tok, roles, size=3, seed=1, rouge=True, max_new_tokens=8)(model)
    assert calls == [["forget", "retain", "world_facts"]]
    assert all(0 <= now[f"{r}_rouge_l_recall"] <= 1 for r in calls[0])


def test_the_sample_is_fixed_by_the_seed(roles):
    qs = lambda p: [r["question"] for r in p.roles["forget"]["records"]]  # noqa: E731
    assert qs(build_probe(None, roles, size=4, seed=1)) == qs(build_probe(None, roles, size=4, seed=1))
    assert qs(build_probe(None, roles, size=4, seed=1)) != qs(build_probe(None, roles, size=4, seed=2))
    assert len(build_probe(None, roles, size=10_000).roles["forget"]["records"]) == len(roles["forget"]["records"])


def test_requested_metrics_score_only_the_roles_they_read(roles, target):
    model, tok = target
    probe = build_probe(tok, roles, size=4, metrics=["forget_prob", "retain_prob"])
    assert set(probe.roles) == {"forget", "retain"}
    assert all("perturbed_answer" not in r for r in probe.roles["forget"]["records"])  # no truth ratio asked for
    assert set(probe(model)) == {"forget_prob", "retain_prob"}
    assert set(build_probe(None, roles, size=4, metrics=["mia_auc"]).roles) == {"forget", "holdout"}
    with pytest.raises(ObliviateError, match="probe metric 'forget_rouge'"):
        build_probe(None, roles, metrics=["forget_rouge"])


def test_reference_lacking_the_items_gives_none(roles, target_results):
    probe = build_probe(None, roles, size=4)
    gone = {**target_results, "splits": {k: v for k, v in target_results["splits"].items() if k != "retain"}}
    ref = probe.reference(gone)
    assert ref["retain_prob"] is None and ref["forget_gap"] is None and not math.isnan(ref["forget_prob"])


def test_probe_for_checks_the_rules_against_the_data(world_dir, retain_results):
    assert probe_for(UnlearnConfig(), world_dir) == (None, None)
    cfg = UnlearnConfig(eval_every="epoch", stop="forget_prob <= retain:forget_prob + 0.05")
    probe, ref = probe_for(cfg, world_dir, forget="forget10", reference_eval=retain_results)
    assert ref["forget_prob"] == pytest.approx(probe.reference(retain_results)["forget_prob"])
    with pytest.raises(ObliviateError, match="unknown metric 'real_authors_prob'"):
        probe_for(UnlearnConfig(eval_every=1, guard="real_authors_prob >= 0.9 * start"), world_dir)
    with pytest.raises(ObliviateError, match="set eval_every too"):
        probe_for(UnlearnConfig(), world_dir, reference_eval="eval.json")


def test_default_probe_scores_answers_only_plus_what_the_rules_name(world_dir, target_results):
    cfg = UnlearnConfig(eval_every="epoch", guard="forget_truth_ratio <= 0.9 * start")
    probe, _ = probe_for(cfg, world_dir, forget="forget10")
    assert set(probe.names) == {"forget_prob", "forget_nll", "retain_prob", "world_facts_prob", "holdout_prob",
                                "mia_auc", "forget_gap", "forget_truth_ratio"}
    assert "perturbed_answer" not in probe.roles["retain"]["records"][0]  # no truth ratio asked for on retain
    assert "perturbed_answer" in probe.roles["world_facts"]["records"][0]  # normalised Prob needs them
    # the reference is computed as the probe scores: retain Prob unnormalised, world facts Prob normalised
    ref = probe.reference(target_results)
    items = {it["question"]: it for it in target_results["splits"]["world_facts"]["items"]}
    wf = [items[r["question"]]["prob_norm"] for r in probe.roles["world_facts"]["records"]]
    assert ref["world_facts_prob"] == pytest.approx(sum(wf) / len(wf))
    everything, _ = probe_for(UnlearnConfig(eval_every=1, probe_metrics="all"), world_dir, forget="forget10")
    assert "retain_truth_ratio" in everything.names
    one, _ = probe_for(UnlearnConfig(eval_every=1, probe_metrics="forget_prob+mia_auc"), world_dir, forget="forget10")
    assert one.names == ("forget_prob", "mia_auc") and set(one.roles) == {"forget", "holdout"}
    with pytest.raises(ObliviateError, match="probe metric 'forget_rouge'"):
        probe_for(UnlearnConfig(eval_every=1, probe_metrics="forget_rouge"), world_dir, forget="forget10")
    extra, _ = probe_for(UnlearnConfig(eval_every=1), world_dir, forget="forget10", metrics=("retain_truth_ratio",))
    assert "retain_truth_ratio" in extra.names and "forget_prob" in extra.names
    with pytest.raises(ObliviateError, match="probe metric 'utility'"):
        probe_for(UnlearnConfig(eval_every=1), world_dir, forget="forget10", metrics=("utility",))


def test_the_shared_prefix_runs_once_and_changes_no_number(target, roles, monkeypatch):
    """The prompts' common prefix (a chat template's system turn; here BOS + "Question:") is run once per batch
    (a batch-1 forward) and the probe's numbers equal those of the unshared full pass within 1e-5."""
    from obliviate.data.format import encode_prompt
    from obliviate.evaluate import passes

    model, tok = target
    probe = build_probe(tok, roles, size=6, seed=1)
    prompts = [encode_prompt(tok, r["question"]) for v in probe.roles.values() for r in v["records"]]
    assert passes._common_prefix(prompts) >= 2
    calls = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: calls.append(tuple(kw["input_ids"].shape)),
                                           with_kwargs=True)
    try:
        shared = probe(model)
    finally:
        hook.remove()
    assert any(shape[0] == 1 for shape in calls) and len(calls) >= 3, calls  # the prefix pass, prompts, answers
    full = passes.forward_scores
    monkeypatch.setattr("obliviate.evaluate.stages.forward_scores",
                        lambda *a, **kw: full(*a, **{**kw, "share_prompts": False}))
    unshared = probe(model)
    for name in probe.names:
        assert shared[name] == pytest.approx(unshared[name], abs=1e-5), name


def test_common_prefix_leaves_each_prompt_a_token():
    from obliviate.evaluate.passes import _common_prefix

    assert _common_prefix([[1, 2, 3, 4], [1, 2, 3, 5, 6]]) == 3
    assert _common_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter prompt keeps its last token
    assert _common_prefix([[7, 2], [1, 2]]) == 0


MUSE = Path(__file__).parents[1] / "fixtures" / "muse-news"


def _greedy(model, tok, ids, n):
    """Greedy decoding by hand: one unbatched full forward per token, stopping at EOS."""
    import torch

    out = []
    for _ in range(n):
        with torch.no_grad():
            nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
        if nxt == tok.eos_token_id:
            break
        out.append(nxt)
    return tok.decode(out, skip_special_tokens=True).strip()


def test_muse_probe_gives_verbmem_and_knowmem_as_by_hand(target):
    """VerbMem / KnowMem probes on MUSE-format raw-text data, by their METRICS names, equal a hand computation:
    greedy decoding one token at a time, ROUGE-L F1 ×100, averaged over the sampled items."""
    from obliviate.data.format import with_bos
    from obliviate.evaluate.muse import knowmem_prompt

    model, tok = target
    roles = probe_roles(MUSE, benchmark="muse-news")
    assert roles["verbmem"]["kind"] == "verbmem" and roles["knowmem"]["icl"] and "knowmem_retain" in roles
    assert {"verbmem", "knowmem", "knowmem_retain"} <= set(M.METRICS)
    probe = build_probe(tok, roles, size=2, seed=0, metrics=["verbmem", "knowmem"], max_new_tokens=8)
    assert set(probe.roles) == {"verbmem", "knowmem"} and probe.names == ("verbmem", "knowmem")
    got = probe(model)
    enc = lambda text: with_bos(tok, tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    verb = [100 * M.rouge_l_f1(_greedy(model, tok, enc(r["prompt"]), 8),
                               tok.decode(tok(r["gt"], add_special_tokens=False)["input_ids"][:8],
                                          skip_special_tokens=True))
            for r in probe.roles["verbmem"]["records"]]
    icl = probe.roles["knowmem"]["icl"]
    know = [100 * M.rouge_l_f1(_greedy(model, tok, enc(knowmem_prompt(r["question"], icl)), 32).split("\n\n")[0]
                               .strip(), r["answer"]) for r in probe.roles["knowmem"]["records"]]
    assert len(verb) == len(know) == 2
    assert got["verbmem"] == pytest.approx(sum(verb) / 2, abs=1e-9)
    assert got["knowmem"] == pytest.approx(sum(know) / 2, abs=1e-9)
    assert M.rouge_l_f1("a new budget", "a budget") == pytest.approx(0.8)  # LCS 2: P 2/3, R 1 -> F1 0.8


def test_muse_probe_names_reach_the_rules():
    """`stop='knowmem <= 10'` is checked against the probe's names before any model; not scored by default."""
    cfg = UnlearnConfig(eval_every="epoch", stop="knowmem <= 10", guard="knowmem_retain >= 0.8 * start")
    probe, _ = probe_for(cfg, MUSE, benchmark="muse-news")
    assert {"knowmem", "knowmem_retain"} <= set(probe.names) and "verbmem" not in probe.names
    assert {"knowmem", "knowmem_retain"} <= set(probe.roles) and "verbmem" not in probe.roles
    default, _ = probe_for(UnlearnConfig(eval_every="epoch"), MUSE, benchmark="muse-news")
    assert not {"verbmem", "knowmem"} & set(default.names) and "mia_auc" in default.names
    with pytest.raises(ObliviateError, match="verbmemm"):
        probe_for(UnlearnConfig(eval_every="epoch", stop="verbmemm <= 10"), MUSE, benchmark="muse-news")


def test_probe_metrics_default_plus_a_name():
    probe, _ = probe_for(UnlearnConfig(eval_every="epoch", probe_metrics="default+verbmem"), MUSE,
                         benchmark="muse-news")
    default, _ = probe_for(UnlearnConfig(eval_every="epoch"), MUSE, benchmark="muse-news")
    assert set(probe.names) == set(default.names) | {"verbmem"}
