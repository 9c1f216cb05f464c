"""Smoke tests of the spine's CLI verbs on the tiny world and micro model (the other verbs have their own)."""

import json

from obliviate.cli import VERBS, main


def test_help_lists_every_verb(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


def test_world_init_finetune_chain(tmp_path, capsys):
    data, base, target = tmp_path / "data", tmp_path / "base", tmp_path / "target"
    assert main(["world", "--preset", "tiny", "--seed", "1", "--out", str(data)]) == 0
    assert json.loads((data / "world.json").read_text())["seed"] == 1
    assert main(["init-model", "--size", "micro", "--data", str(data), "--out", str(base)]) == 0
    assert main(["finetune", "--model", str(base), "--data", str(data), "--split", "forget10", "--out", str(target),
                 "max_steps=2", "batch_size=4"]) == 0
    run = json.loads((target / "run.json").read_text())
    assert run["config"]["max_steps"] == 2 and run["config"]["lr"] == 3e-3  # the micro preset, resolved
    assert {"torch", "transformers"} <= set(run["versions"])
    assert len((target / "train_log.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    # errors: one line, exit 2, nothing overwritten
    before = (target / "model.safetensors").read_bytes()
    assert main(["finetune", "--model", str(base), "--data", str(data), "--out", str(target)]) == 2
    assert main(["finetune", "--model", str(base), "--data", str(data), "--out", str(tmp_path / "x"), "nope=1"]) == 2
    assert main(["world", "--preset", "tiny", "--seed", "2", "--out", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("obliviate ") for line in err)
    assert "already holds a model" in err[0] and "unknown key(s) nope" in err[1] and "already holds a world" in err[2]
    assert (target / "model.safetensors").read_bytes() == before


def test_ls_prints_the_registries(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for key in ("npo ", "simnpo", "rmu", " ap ", " sam ", " wa ", "forget_quality", "mia_min_k_pp"):
        assert key in out, key
    assert "Smoother(" not in out


def test_bench_unknown_name_is_a_clear_error(capsys):
    assert main(["bench", "no_such_bench"]) == 2
    err = capsys.readouterr().err  # only a known script name is pointed to its file in a checkout (issue 28)
    assert "unknown benchmark 'no_such_bench'" in err and "eval_speed" in err and "benchmarks/no_such" not in err


def test_warnings_and_errors_are_one_line_each(capsys):
    import warnings

    from obliviate import cli

    shown = warnings.showwarning
    try:
        cli.one_line_warnings("unlearn")
        warnings.warn("3 items were longer than max_length\nand were cut", UserWarning)
    finally:
        warnings.showwarning = shown
    assert capsys.readouterr().err == "obliviate unlearn: warning: 3 items were longer than max_length and were cut\n"
    assert cli.main(["world", "--out", "/proc/obliviate-cannot-write-here"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("obliviate world: error: ") and err.count("\n") == 1, err
