"""`obliviate unlearn` smoke tests on the micro target: a run, a YAML config, bad input exits 2 with one line."""

import json

from obliviate.cli import main


def test_cli_unlearn_run_and_resume_refusal(unlearn_target_dir, world_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "idk+ap",
                 "--out", str(out), "--seed", "3", "max_steps=3", "batch_size=4", "lr=3e-3"])
    assert code == 0
    assert "forget answer probability" in capsys.readouterr().out
    for f in ("run.json", "log.jsonl", "summary.json", "model.safetensors", "obliviate.json"):
        assert (out / f).is_file(), f
    meta = json.loads((out / "obliviate.json").read_text())
    assert meta["size"] == "micro" and meta["recipe"] == "idk+ap" and meta["forget"] == "forget10"
    assert json.loads((out / "run.json").read_text())["seed"] == 3
    again = main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "idk+ap",
                  "--out", str(out)])
    assert again == 2 and "already holds a model" in capsys.readouterr().err


def test_cli_yaml_config(unlearn_target_dir, world_dir, tmp_path):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("recipe: npo+gd+sam\nmax_steps: 2\nbatch_size: 4\nsam_rho: 0.02\n")
    out = tmp_path / "y"
    assert main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--config", str(cfg),
                 "--out", str(out), "lr=2e-3"]) == 0
    c = json.loads((out / "run.json").read_text())["config"]
    assert (c["recipe"], c["sam_rho"], c["lr"], c["max_steps"]) == ("npo+gd+sam", 0.02, 2e-3, 2)


def test_cli_bad_input_is_one_line_exit_2(unlearn_target_dir, world_dir, tmp_path, capsys):
    base = ["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--out", str(tmp_path / "x")]
    assert main(base + ["--recipe", "npo+ga"]) == 2
    err = capsys.readouterr().err.strip()
    assert "two objective parts" in err and len(err.splitlines()) == 1
    assert main(base + ["--recipe", "ga", "--forget", "forget99"]) == 2
    assert "no split 'forget99'" in capsys.readouterr().err
    assert main(base + ["--recipe", "ga", "npo_bta=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
