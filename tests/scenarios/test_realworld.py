"""Real-world scenario: the probe builder's filtering on answers we control, subject sets, the user-file path."""

import json

import pytest

from obliviate import ObliviateError
from obliviate.report.scenarios import realworld_table
from obliviate.scenarios import realworld as RW

FACTS = [{"name": f"Country{i}", "capital": f"City{i}", "region": ["Asia", "Europe", "Africa", "Oceania"][i % 4],
          "subregion": f"Sub{i}", "demonym": f"Demo{i}", "currency": f"C{i:02d}"} for i in range(8)]


def test_build_probes_phrasings_and_perturbations():
    probes = RW.build_probes(FACTS, seed=0)
    per_country = sum(len(p) for p in RW.PHRASINGS.values())  # 3 + 2 + 2 + 2 + 2 = 11
    assert len(probes) == 8 * per_country == 88
    for p in probes:
        assert len(p["perturbed_answer"]) == RW.PERTURBED and p["golden_answer"] not in p["perturbed_answer"]
        others = {f[p["attribute"]] for f in FACTS if f["name"] != p["name"]}
        assert set(p["perturbed_answer"]) <= others  # the same attribute of other countries
    assert RW.build_probes(FACTS, seed=0) == probes


def _stub_answers(probes, known):
    """A model stub: the right answer in a sentence for probes of `known` subjects' capitals/demonyms, else wrong."""
    out = []
    for p in probes:
        if p["name"] in known and p["attribute"] in ("capital", "demonym"):
            out.append(f"I believe it is {p['golden_answer']}.")
        elif p["name"] in known and p["attribute"] == "region":
            out.append("Somewhere far away.")  # ROUGE-L recall 0
        else:
            out.append("I do not know.")
    return out


def test_filter_known_rule_and_subject_sets():
    probes = RW.build_probes(FACTS, seed=0)
    known = {f"Country{i}" for i in range(6)}
    judged = RW.filter_known(probes, _stub_answers(probes, known), keep_rouge=0.5)
    kept = [p for p in judged if p["kept"]]
    # kept = capital (3 phrasings) + demonym (2) of the 6 known countries; the rest has recall 0
    assert len(kept) == 6 * 5 and {p["attribute"] for p in kept} == {"capital", "demonym"}
    assert all(p["rouge_l_recall"] == 1.0 for p in kept)
    assert all(p["rouge_l_recall"] == 0.0 for p in judged if not p["kept"])
    # a two-word answer half present: recall 0.5 is kept at 0.5, not at 0.6
    two = [{**probes[0], "golden_answer": "New City"}]
    assert RW.filter_known(two, ["the city"], 0.5)[0]["kept"] and not RW.filter_known(two, ["the city"], 0.6)[0]["kept"]
    cfg = RW.RealworldConfig(forget_subjects=2, neighbour_subjects=2, eval_subjects=1, general_subjects=1)
    sets = RW.split_subjects(judged, cfg)
    names = {k: {p["name"] for p in v} for k, v in sets.items()}
    assert [len(names[k]) for k in ("forget", "neighbor", "neighbor_eval", "general")] == [2, 2, 1, 1]
    assert set().union(*names.values()) == known  # exactly the subjects the stub knows, all disjoint
    assert sum(len(v) for v in names.values()) == 6
    assert all(len(v) == len(names[k]) * 5 for k, v in sets.items())
    with pytest.raises(ObliviateError, match="only 6 subjects"):
        RW.split_subjects(judged, RW.RealworldConfig(forget_subjects=4, neighbour_subjects=2, eval_subjects=1))
    with pytest.raises(ObliviateError, match="only 0 subjects"):  # 5 kept probes each: none reaches 6
        RW.split_subjects(judged, RW.RealworldConfig(min_items=6))


def test_realworld_pipeline_on_a_stub_model(unlearn_target_dir, tmp_path, monkeypatch):
    """End to end on the micro model: probes answered by the stub, LoRA unlearning, before/after evaluation."""
    from obliviate.models.loading import load_model
    from obliviate.unlearn import UnlearnConfig

    monkeypatch.setattr(RW, "country_facts", lambda n: FACTS[:n])
    monkeypatch.setattr(RW, "model_answers", lambda m, t, qs, cfg, desc="": _stub_answers(
        RW.build_probes(FACTS, seed=0), {f"Country{i}" for i in range(6)}))
    model, tok = load_model(unlearn_target_dir)
    cfg = RW.RealworldConfig(countries=8, forget_subjects=2, neighbour_subjects=2, eval_subjects=1,
                             general_subjects=1, max_new_tokens=8)
    ucfg = UnlearnConfig(recipe="me+gd", lora=True, lr=3e-3, max_steps=3, batch_size=4)
    info = RW.realworld(model, tok, cfg, ucfg, out=tmp_path / "rw", model_name=str(unlearn_target_dir), progress=False)
    assert info["probes"]["probes"] == 88 and info["probes"]["kept"] == 30
    assert info["probes"]["by_attribute"]["capital"] == [18, 24]
    assert {k: v["items"] for k, v in info["sets"].items()} == {"forget": 10, "neighbor": 10, "neighbor_eval": 5,
                                                                "general": 5}
    # training used the model's own answers; evaluation scores the golden answer
    forget_eval = json.loads((tmp_path / "rw/eval/after/data/forget.json").read_text())
    assert {r["answer"] for r in forget_eval} <= {f["capital"] for f in FACTS} | {f["demonym"] for f in FACTS}
    assert info["before"]["forget"]["cosine_similarity"] == pytest.approx(1.0)  # the model against itself
    for when in ("before", "after"):
        assert 0 <= info[when]["forget_efficacy_no_es"] <= 1 and 0 <= info[when]["mu_neighbor_no_es"] <= 1
        assert "general" in info[when]
    assert info["unlearn"]["weights_changed"] and info["settings"]["unlearn"]["lora"] is True
    headers, rows = realworld_table(info)
    assert [r[0] for r in rows] == ["before", "after"] and len(rows[0]) == len(headers)


def _write_user_files(d):
    def rec(name, i, perturbed=False):
        r = {"name": name, "question": f"What is fact {i} about {name}?", "answer": f"{name} has fact {i}, I think.",
             "golden_answer": f"{name} fact {i}."}
        if perturbed:
            r |= {"paraphrased_answer": r["golden_answer"], "perturbed_answer": [f"{name} fact {i + 10}.",
                                                                                 f"{name} fact {i + 20}."]}
        return r

    forget = [rec(n, i, True) for n in ("Ann Lee", "Bo Chan") for i in range(3)]
    neighbour = [rec(n, i) for n in ("Cy Dunn", "Di Eve") for i in range(3)]
    evaln = [rec("Ed Fox", i, True) for i in range(4)]
    (d / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forget))  # the paper's JSON Lines
    (d / "neighbor.json").write_text(json.dumps(neighbour))
    (d / "neighbor_perturbed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evaln))
    return d / "forget.jsonl", d / "neighbor.json", d / "neighbor_perturbed.jsonl"


def test_cli_user_files(unlearn_target_dir, tmp_path, capsys):
    from obliviate.cli import main

    f, n, e = _write_user_files(tmp_path)
    out = tmp_path / "rw"
    base = ["realworld", "--model", str(unlearn_target_dir), "--recipe", "ga+gd", "--out", str(out)]
    code = main(base + ["--forget-file", str(f), "--neighbour-file", str(n), "--neighbour-eval-file", str(e),
                        "max_steps=2", "lr=3e-3"])
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "realworld.json").read_text())
    assert "probes" not in info and not (out / "probes.json").exists()
    assert {k: (v["items"], len(v["subjects"])) for k, v in info["sets"].items()} == {
        "forget": (6, 2), "neighbor": (6, 2), "neighbor_eval": (4, 1)}
    assert info["settings"]["unlearn"]["lora"] is True and info["settings"]["user_files"] is True
    scored = json.loads((out / "eval/after/data/forget.json").read_text())
    assert scored[0]["answer"] == "Ann Lee fact 0." and len(scored[0]["perturbed_answer"]) == 2
    trained = json.loads((out / "data/forget.json").read_text())
    assert trained[0]["answer"] == "Ann Lee has fact 0, I think."
    assert "FE forget" in capsys.readouterr().out
    assert main(base + ["--forget-file", str(f), "--neighbour-file", str(n)]) == 2  # out holds a run
    assert "already holds" in capsys.readouterr().err
    assert main(base + ["--forget-file", str(f), "--out", str(tmp_path / "x")]) == 2
    assert "both --forget-file and --neighbour-file" in capsys.readouterr().err
    assert main(base + ["--forget-file", str(f), "--neighbour-file", str(f), "--overwrite"]) == 2
    assert "share subject" in capsys.readouterr().err
    assert main(base + ["--forget-file", str(f), "--neighbour-file", str(n), "--countries", "9", "--overwrite"]) == 2
    assert "user files replace" in capsys.readouterr().err
    assert main(base + ["--full-finetune", "lora=true", "--overwrite"]) == 2
    assert "conflict" in capsys.readouterr().err


def test_probe_answers_are_reused_only_for_the_same_model_and_probes(unlearn_target_dir, tmp_path, monkeypatch):
    """probes.json is a stage record (obliviate.stagecache): reused under the same key, redone when the key changes
    or when the file is torn."""
    from obliviate.models.loading import load_model

    calls = []
    monkeypatch.setattr(RW, "country_facts", lambda n: FACTS[:n])
    def answers(model, tok, questions, cfg, desc=""):
        calls.append(cfg.max_new_tokens)
        return _stub_answers(RW.build_probes(FACTS[:cfg.countries], seed=0), {f"Country{i}" for i in range(6)})

    monkeypatch.setattr(RW, "model_answers", answers)
    model, tok = load_model(unlearn_target_dir)
    path, cfg = tmp_path / "probes.json", RW.RealworldConfig(countries=8, max_new_tokens=8)
    first = RW._judged_probes(model, tok, cfg, path, "m")
    assert RW._judged_probes(model, tok, cfg, path, "m") == first and calls == [8]
    RW._judged_probes(model, tok, RW.RealworldConfig(countries=8, max_new_tokens=9), path, "m")
    assert calls == [8, 9] and json.loads(path.read_text())["key"]["max_new_tokens"] == 9
    path.write_text(path.read_text()[:100])  # cut short
    assert RW._judged_probes(model, tok, RW.RealworldConfig(countries=8, max_new_tokens=9), path, "m") == first
    assert calls == [8, 9, 9]
