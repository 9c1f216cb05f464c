"""`obliviate reproduce` end to end with a micro "pretrained" model on the tiny world: the same pipeline as the
SmolLM2 run (fine-tune a given base model, six recipes × 2 seeds, attacks, continual, claims), in about a minute."""

import json

import pytest

from obliviate.cli import main
from obliviate.report.claims import CLAIMS, NOT_COMPUTED


@pytest.fixture(scope="module")
def reproduce_run(base_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "run"
    argv = ["reproduce", "--model", str(base_dir), "--preset", "tiny", "--seeds", "2", "--out", str(out),
            "--protocol", "fixed", "finetune_epochs=15", "finetune_lr=3e-3", "unlearn_overrides=*:lr=3e-3,epochs=2,batch_size=4",
            "max_new_tokens=6", "relearn_k=3", "relearn_steps=1,2", "jailbreak_steps=1", "jailbreak_search_width=4",
            "jailbreak_tokens=2", "continual_tasks=2", "continual_seeds=2", "jobs=1"]
    assert main(argv) == 0
    return out


def test_reproduce_fine_tunes_the_given_model_and_tests_every_claim(reproduce_run, base_dir):
    out = reproduce_run
    demo = json.loads((out / "demo.json").read_text())
    assert demo["config"]["base_model"] == str(base_dir)
    assert not (out / "models" / "base").exists()  # the pretrained base is used where it is, never copied
    target = json.loads((out / "models" / "target" / "obliviate.json").read_text())
    assert target == {"finetuned_from": str(base_dir), "split": "full+world_facts"}
    # the reproduce defaults reached the stages: attacks only on the recipes the claims compare, continual runs
    runs = out / "runs"
    assert (runs / "npo_gd_sam" / "seed1" / "jailbreak" / "jailbreak.json").is_file()
    assert (runs / "npo_gd" / "seed0" / "relearn" / "relearn.json").is_file()
    assert not (runs / "me_gd" / "seed0" / "relearn").exists()
    assert (runs / "me_gd" / "seed0" / "mia" / "mia.json").is_file()
    for attack in ("quantize", "reformat"):  # on every recipe, with the run's target / retain models as controls
        result = json.loads((runs / "me_gd" / "seed1" / attack / f"{attack}.json").read_text())
        assert {"target", "retain"} <= {r["model"] for r in result["rows"]} if attack == "quantize" \
            else {"target", "retain"} <= set(result["accuracy"])
    # reformat's control scores live in the run's attack cache, one directory per control model (target, retain)
    assert len({f.parent for f in (out / "attack_cache").glob("*/*.reformat-*.json")}) == 2
    for name in ("npo_gd", "npo_gd_reference-original", "me_gd"):
        for seed in (0, 1):
            info = json.loads((out / "continual" / name / f"seed{seed}" / "continual.json").read_text())
            assert len(info["rows"]) == 3  # before + 2 tasks
    assert json.loads((out / "continual" / "npo_gd_reference-original" / "seed0" / "continual.json").read_text()
                      )["reference"] == "original"
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == list(CLAIMS)
    for c in claims:  # every claim has the data it needs: a verdict, not "not computed"...
        if c["id"].startswith("matched_"):  # ... except those at matched forgetting: this run is fixed-step
            assert c["verdict"] == NOT_COMPUTED and "0 seed(s) with a value" in c["why"], c
            continue
        assert c["verdict"] != NOT_COMPUTED, (c["id"], c["why"])
        for p in c["parts"]:
            assert len(p["a_values"]) == 2
    html = (out / "report.html").read_text()
    assert "Do the papers&#x27; findings hold here?" in html or "Do the papers' findings hold here?" in html
    assert "retain Refusal" in html and "Continual unlearning" in html


def test_retain_refusal_rate_is_in_every_evaluation(reproduce_run):
    for f in reproduce_run.glob("runs/*/seed*/eval/eval.json"):
        means = json.loads(f.read_text())["splits"]["retain"]["means"]
        assert 0.0 <= means["refusal_rate"] <= 1.0, f


def test_reproduce_refuses_an_unknown_attack_recipe(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path / "r"), "--recipes", "ga+gd", "attack_recipes=npo+gd"]) == 2
    assert "attack_recipes: npo+gd not among the recipes" in capsys.readouterr().err


def test_lora_brings_its_fine_tuning_defaults_and_given_values_win():
    from obliviate.cli import parse
    from obliviate.commands.reproduce import resolve_config
    from obliviate.pipeline import command_preset

    REPRODUCE, REPRODUCE_LORA = command_preset("reproduce"), command_preset("reproduce-lora")

    def cfg(*argv):
        return resolve_config(parse(["reproduce", *argv]))

    full = cfg()
    assert (full.finetune_lora, full.finetune_lr, full.finetune_epochs) == (False, 3e-4, 8.0)
    assert (full.finetune_lr, full.finetune_epochs) == (REPRODUCE["finetune_lr"], REPRODUCE["finetune_epochs"])
    for argv in (["--lora"], ["finetune_lora=true"]):
        lora = cfg(*argv)
        assert (lora.finetune_lora, lora.finetune_lr, lora.finetune_epochs) == (
            True, REPRODUCE_LORA["finetune_lr"], REPRODUCE_LORA["finetune_epochs"])
    assert cfg("--lora", "finetune_lr=5e-4").finetune_lr == 5e-4
    assert (full.continual_tasks, full.continual_seeds) == (REPRODUCE["continual_tasks"], 2)
