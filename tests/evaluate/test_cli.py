"""`obliviate eval` smoke tests: a full run with reference models and a local NLI model; bad inputs exit 2."""

import json

from obliviate.cli import main


def test_eval_cli_end_to_end(target_dir, retain_dir, world_dir, make_nli_dir, tmp_path, capsys):
    """Target vs retain and before = target: every aggregate is computed, including MU-18 and Forget Efficacy."""
    nli = make_nli_dir(tmp_path / "nli")
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(target_dir), "--data", str(world_dir), "--forget", "forget10", "--out", str(out),
            "--retain-model", str(retain_dir), "--original-model", str(target_dir), "--nli", str(nli),
            "max_new_tokens=24"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "forget_quality" in printed and "model_utility" in printed
    r = json.loads((out / "eval.json").read_text())
    for key in ("forget_quality", "model_utility", "mu18", "forget_efficacy", "privleak", "mia"):
        assert key in r["aggregates"], key
    assert (out / "retain" / "eval.json").is_file() and (out / "before" / "eval.json").is_file()
    assert r["config"]["max_new_tokens"] == 24 and r["config"]["nli"] == str(nli)
    labels = {it["entailment_label"] for it in r["splits"]["forget"]["items"]}
    assert labels <= {None, "entailment", "neutral", "contradiction"}
    # the retain model's saved results can stand in for the model
    out2 = tmp_path / "eval2"
    assert main(["eval", "--model", str(retain_dir), "--data", str(world_dir), "--out", str(out2),
                 "--retain-results", str(out / "retain" / "eval.json"), "max_new_tokens=24", "embedder=none"]) == 0
    assert json.loads((out2 / "eval.json").read_text())["aggregates"]["forget_quality"] == 1.0


def test_eval_cli_bad_inputs(target_dir, world_dir, tmp_path, capsys):
    empty = tmp_path / "noweights"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    assert main(["eval", "--model", str(empty), "--data", str(world_dir), "--out", str(tmp_path / "o")]) == 2
    assert "no model weights" in capsys.readouterr().err
    assert main(["eval", "--model", str(target_dir), "--data", str(world_dir), "--out", str(tmp_path / "o"),
                 "--forget", "forget77"]) == 2
    assert "forget split not found" in capsys.readouterr().err
    assert main(["eval", "--model", str(target_dir), "--data", str(world_dir), "--out", str(tmp_path / "o"),
                 "bogus_key=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
