import json

import pytest

from obliviate import ObliviateError
from obliviate.data.world import PERTURBATIONS, WORLD_PRESETS, build_world, write_world


def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b = write_world(tmp_path / "a", "tiny", 7), write_world(tmp_path / "b", "tiny", 7)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    c = write_world(tmp_path / "c", "tiny", 8)
    assert (a / "full.json").read_bytes() != (c / "full.json").read_bytes()


def test_split_structure_nesting_and_counts():
    w = build_world("demo", 0)
    s, p = w["splits"], WORLD_PRESETS["demo"]
    assert len(s["full"]) == p.authors * p.questions
    for lvl, keep in (("01", "99"), ("05", "95"), ("10", "90")):
        forget, retain = s[f"forget{lvl}"], s[f"retain{keep}"]
        assert len(forget) + len(retain) == len(s["full"])
        assert forget == s["full"][len(retain):], "forget sets are the last authors"
        assert len(s[f"holdout{lvl}"]) == len(forget)
        assert not {r["author"] for r in forget} & {r["author"] for r in retain}
    assert s["forget01"] == s["forget05"][-len(s["forget01"]):]  # nested
    assert s["forget05"] == s["forget10"][-len(s["forget05"]):]
    trained = {r["author"] for r in s["full"]}
    assert not trained & {r["author"] for r in s["holdout10"]}
    assert all(r in s["retain90"] for r in s["retain_perturbed"])
    # demo: 20 authors -> forget10 = 2 authors
    assert w["manifest"]["forget_authors"]["forget10"] == 2


def test_every_answer_has_paraphrase_and_five_distinct_wrong_perturbations():
    s = build_world("demo", 3)["splits"]
    for r in s["full"]:
        assert r["paraphrased_answer"] and r["paraphrased_question"]
        pert = r["perturbed_answer"]
        assert len(pert) == PERTURBATIONS == len(set(pert))
        assert r["paraphrased_answer"] not in pert
    for r in s["world_facts_perturbed"]:
        assert len(r["perturbed_answer"]) == 3 and r["answer"] not in r["perturbed_answer"]
    text = json.dumps(s)
    assert text.isascii()
    assert len({r["question"] for r in s["full"]}) == len(s["full"]), "questions are unique"


def test_refusals_written_and_unknown_preset_refused(tmp_path):
    out = write_world(tmp_path / "w", "tiny", 0)
    assert len(json.loads((out / "refusals.json").read_text())) == 100
    with pytest.raises(ObliviateError, match="unknown world preset"):
        build_world("huge", 0)
    with pytest.raises(ObliviateError, match="already holds a world"):
        write_world(out, "tiny", 1)


def test_wrong_names_are_decoys_no_model_is_trained_on():
    """A perturbed name that belonged to a trained author would be familiar to the retain model and bias TR."""
    s = build_world("demo", 0)["splits"]
    people = {r["author"] for r in s["full"]} | {r["author"] for r in s["holdout10"]}
    for r in s["full"]:
        if r["slot"] == "name":
            for wrong in r["perturbed_answer"]:
                assert not any(name in wrong for name in people - {r["author"]}), wrong



def test_full_preset_builds_with_distinct_titles_and_keeps_smaller_worlds_two_word():
    """TOFU's size (200 authors + holdout + decoys, 3 books each) needs more titles than the 24 x 24 two-word
    pool holds: `world --preset full` used to loop forever. Worlds below half the pool keep two-word titles."""
    import random

    from obliviate.data.world import TWO_WORD_TITLES, _make_authors

    w = build_world("full", 0)
    assert len(w["splits"]["forget10"]) == 400 and len(w["splits"]["full"]) == 4000
    countries = [("France", "Paris"), ("Peru", "Lima")]

    def titles(n):
        return [a[k] for a in _make_authors(n, random.Random(0), 0, countries) for k in ("book1", "book2", "book3")]

    small, large = titles(TWO_WORD_TITLES // 3), titles(280)
    assert len(set(large)) == len(large) == 840
    assert all(" of " not in t for t in small)
    assert sum(" of " in t for t in large) == 840 - TWO_WORD_TITLES
