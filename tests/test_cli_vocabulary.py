"""One CLI vocabulary (issue 26 §4): --print-config, --json, --quiet, the renamed flags and their deprecated
spellings, one LoRA concept, --model-args on every verb that loads a model, numbers as numbers in results.json."""

import json
import math

import pytest

from obliviate.cli import main
from obliviate.reader import parse_yaml


def _config(capsys, argv: list[str]) -> tuple[dict, str]:
    """(the YAML printed by --print-config, stderr)."""
    assert main(argv + ["--print-config"]) == 0
    out = capsys.readouterr()
    return parse_yaml(out.out), out.err


def test_print_config_resolves_the_documented_precedence_and_does_no_work(tmp_path, capsys):
    yaml_file = tmp_path / "u.yaml"
    yaml_file.write_text("lr: 0.001\nseed: 3\nmax_steps: 7\n")
    out = tmp_path / "run"
    cfg, err = _config(capsys, ["unlearn", "--model", "m", "--out", str(out), "--config", str(yaml_file),
                                "lr=0.002", "--seed", "5", "--recipe", "npo+gd"])
    # defaults < --config file < key=value < flags
    assert (cfg["lr"], cfg["seed"], cfg["max_steps"], cfg["objective"], cfg["regularizer"]) == (0.002, 5, 7, "npo", "gd")
    assert err == ""
    assert not out.exists()  # no run directory: nothing ran
    # lr / epochs / batch size that default per model are shown as the model will get them (papers' values for a
    # model that is not a tiny obliviate one; the tiny size's own defaults for a tiny model directory)
    from obliviate.models.init import PAPER_DEFAULTS, training_defaults

    assert (cfg["epochs"], cfg["batch_size"]) == (PAPER_DEFAULTS.unlearn_epochs, PAPER_DEFAULTS.unlearn_batch_size)
    tiny = tmp_path / "tiny-model"
    tiny.mkdir()
    (tiny / "obliviate.json").write_text('{"size": "tiny"}')
    cfg, _ = _config(capsys, ["unlearn", "--model", str(tiny), "--out", str(out), "--recipe", "npo+gd"])
    d = training_defaults("tiny")
    assert (cfg["lr"], cfg["epochs"], cfg["batch_size"]) == (d.unlearn_lr, d.unlearn_epochs, d.unlearn_batch_size)
    assert d.unlearn_lr != PAPER_DEFAULTS.unlearn_lr  # (else this test could not tell the two apart)
    # the global flags sit before or after the verb
    assert main(["--print-config", "eval", "--model", "m", "max_items=4"]) == 0
    assert parse_yaml(capsys.readouterr().out)["max_items"] == 4


@pytest.mark.parametrize("argv,key,value", [
    (["demo", "--preset", "tiny", "--model-args", "dtype=bfloat16"], "model_args", "dtype=bfloat16"),
    (["reproduce", "--model-args", "dtype=float16,revision=main"], "model_args", "dtype=float16,revision=main"),
    (["reproduce", "--lora"], "finetune_lora", True),
    (["bench", "--steps", "3", "batch_size=2"], "steps", 3),
    (["steal", "budget=100"], "budget", 100),
    (["attack", "relearn", "--model", "m", "--data", "tests/fixtures/tofu_mini", "--steps-list", "5,10"], "steps",
     [5, 10]),
])
def test_print_config_on_every_verb_with_a_config(capsys, argv, key, value):
    cfg, _ = _config(capsys, argv)
    assert cfg[key] == value


def test_print_config_of_verbs_with_several_configs(capsys):
    cfg, _ = _config(capsys, ["tune", "--model", "m", "--out", "o", "--n-trials", "3", "lr=0.01"])
    assert cfg["tune"]["n_trials"] == 3 and cfg["unlearn"]["lr"] == 0.01
    cfg, _ = _config(capsys, ["continual", "--model", "m", "--data", "d", "--out", "o", "--tasks", "2", "--lora"])
    assert cfg["continual"]["tasks"] == 2 and cfg["unlearn"]["lora"] is True and "max_new_tokens" in cfg["eval"]
    cfg, _ = _config(capsys, ["realworld", "--out", "o"])
    assert cfg["unlearn"]["lora"] is True  # realworld's preset: LoRA by default
    cfg, _ = _config(capsys, ["realworld", "--out", "o", "--no-lora"])
    assert cfg["unlearn"]["lora"] is False


def test_a_verb_without_a_config_refuses_print_config(capsys):
    with pytest.raises(SystemExit) as e:
        main(["world", "--out", "w", "--print-config"])
    assert e.value.code == 2 and "world has no config to print" in capsys.readouterr().err


@pytest.mark.parametrize("argv,key,value,old,new", [
    (["unlearn", "--model", "m", "--out", "o", "--ref-model", "T", "--recipe", "npo"], "reference", "original",
     "--ref-model", "--original-model"),
    (["tune", "--model", "m", "--out", "o", "--ref-model", "T", "--recipe", "npo"], ("unlearn", "reference"),
     "original", "--ref-model", "--original-model"),
    (["realworld", "--out", "o", "--full-finetune"], ("unlearn", "lora"), False, "--full-finetune", "--no-lora"),
    (["attack", "relearn", "--model", "m", "--data", "tests/fixtures/tofu_mini", "--steps", "4,2", "--steps", "6"],
     "steps", [6], "--steps", "--steps-list"),
])
def test_deprecated_spellings_map_to_the_new_flag_and_warn_once(capsys, argv, key, value, old, new):
    cfg, err = _config(capsys, argv)
    for k in key if isinstance(key, tuple) else (key,):
        cfg = cfg[k]
    assert cfg == value
    assert err.splitlines() == [f"obliviate {argv[0]}: warning: {old} is deprecated: use {new}"]


def test_renamed_flags_reach_the_same_destination():
    from obliviate.cli import parse

    new = parse(["eval", "--model", "m", "--original-model", "T", "--original-results", "R"])
    old = parse(["eval", "--model", "m", "--before-model", "T", "--before-results", "R"])
    assert (new.before_model, new.before_results) == (old.before_model, old.before_results) == ("T", "R")
    assert old.deprecated == [("--before-model", "--original-model"), ("--before-results", "--original-results")]
    assert not getattr(new, "deprecated", None)
    a = parse(["attack", "jailbreak", "--model", "m", "--data", "d", "--original", "T"])
    b = parse(["attack", "jailbreak", "--model", "m", "--data", "d", "--original-model", "T"])
    assert a.original == b.original == "T"
    assert parse(["unlearn", "--model", "m", "--out", "o", "--original-model", "T"]).ref_model == "T"


@pytest.mark.parametrize("argv,message", [
    (["unlearn", "--model", "m", "--out", "o", "--lora", "lora=false"], "--lora and lora=false conflict"),
    (["unlearn", "--model", "m", "--out", "o", "--no-lora", "lora=true"], "--no-lora and lora=true conflict"),
    (["continual", "--model", "m", "--data", "d", "--out", "o", "--lora", "lora=no"], "--lora and lora=no conflict"),
    (["realworld", "--out", "o", "--full-finetune", "lora=true"], "--no-lora and lora=true conflict"),
    (["reproduce", "--lora", "finetune_lora=false"], "--lora and finetune_lora=false conflict"),
    (["unlearn", "--model", "m", "--out", "o", "--seed", "1", "seed=2"], "--seed and seed=2 conflict"),
])
def test_a_flag_and_an_override_that_disagree_are_one_line_error(capsys, argv, message):
    assert main(argv + ["--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == err.count("warning") + 1, err


def test_agreeing_flag_and_override_are_fine(capsys):
    cfg, _ = _config(capsys, ["unlearn", "--model", "m", "--out", "o", "--lora", "lora=true", "--seed", "2", "seed=2"])
    assert cfg["lora"] is True and cfg["seed"] == 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny world and a micro base model (built once)."""
    d = tmp_path_factory.mktemp("vocab")
    assert main(["world", "--preset", "tiny", "--out", str(d / "w")]) == 0
    assert main(["init-model", "--size", "micro", "--data", str(d / "w"), "--out", str(d / "b")]) == 0
    return d


def test_json_summary_is_the_only_stdout(tiny, tmp_path, capfd):
    capfd.readouterr()
    out = tmp_path / "ft"
    assert main(["--json", "finetune", "--model", str(tiny / "b"), "--data", str(tiny / "w"), "--out", str(out),
                 "max_steps=2"]) == 0
    std = capfd.readouterr()
    s = json.loads(std.out)  # one JSON object, nothing else
    assert s["verb"] == "finetune" and s["steps"] == 2 and isinstance(s["final_loss"], float)
    assert s["outputs"]["run"] == str(out / "run.json") and (out / "run.json").is_file()
    assert "trained 2 steps" in std.err  # the human line went to stderr
    assert main(["unlearn", "--model", str(out), "--data", str(tiny / "w"), "--recipe", "ga", "--out",
                 str(tmp_path / "u"), "max_steps=1", "--json"]) == 0
    s = json.loads(capfd.readouterr().out)
    assert s["verb"] == "unlearn" and s["steps"] == 1 and 0 <= s["forget_prob_after"] <= 1
    assert main(["eval", "--model", str(tmp_path / "u"), "--data", str(tiny / "w"), "--json", "max_items=2",
                 "max_new_tokens=2"]) == 0
    s = json.loads(capfd.readouterr().out)
    assert s["verb"] == "eval" and s["outputs"]["eval"].endswith("eval.json")
    assert s["metrics"]["forget_quality"] is None and "forget_quality" in s["metrics"]["not_computed"]  # no retain
    assert isinstance(s["metrics"]["model_utility"], float)
    assert all(isinstance(v, (int, float, dict, type(None))) for k, v in s["metrics"].items() if k != "not_computed")


def test_quiet_prints_no_bars_no_info_but_warnings(tiny, tmp_path, capfd):
    capfd.readouterr()
    assert main(["--quiet", "unlearn", "--model", str(tiny / "b"), "--data", str(tiny / "w"), "--recipe", "ga",
                 "--out", str(tmp_path / "q"), "max_steps=2", "--ref-model", str(tiny / "b")]) == 0
    std = capfd.readouterr()
    assert std.out == ""
    assert std.err == "obliviate unlearn: warning: --ref-model is deprecated: use --original-model\n", std.err
    assert (tmp_path / "q" / "summary.json").is_file()


def test_quiet_and_json_together(tiny, tmp_path, capfd):
    capfd.readouterr()
    assert main(["world", "--preset", "tiny", "--seed", "4", "--out", str(tmp_path / "w"), "--quiet", "--json"]) == 0
    std = capfd.readouterr()
    assert json.loads(std.out)["seed"] == 4 and std.err == ""


def test_model_args_reach_tune_and_the_demo_pipeline(tiny, tmp_path, monkeypatch):
    """--model-args is a setting used: the loads of tune and of the demo/reproduce pipeline receive it."""
    import obliviate.models.loading as loading

    seen = []

    class Loaded(Exception):
        pass

    def fake(spec, **kw):
        seen.append(kw.get("model_args"))
        raise Loaded

    monkeypatch.setattr(loading, "load_model", fake)
    with pytest.raises(Loaded):
        main(["tune", "--model", str(tiny / "b"), "--data", str(tiny / "w"), "--recipe", "ga+gd", "--out",
              str(tmp_path / "t"), "--model-args", "dtype=bfloat16", "--n-trials", "1"])
    assert seen == ["dtype=bfloat16"]
    from obliviate.commands.demo import resolve_config
    from obliviate.cli import parse
    from obliviate.pipeline.stages import train_job

    cfg = resolve_config(parse(["demo", "--preset", "tiny", "--out", str(tmp_path / "d"), "--model-args",
                                "dtype=bfloat16"]))
    (tmp_path / "d").mkdir()
    with pytest.raises(Loaded):
        train_job(cfg, "target", "full")
    assert seen[-1] == "dtype=bfloat16"
    from obliviate.pipeline.chains import _loader

    with pytest.raises(Loaded):  # the attacks' models too
        _loader(cfg)(tmp_path / "d" / "models" / "target")
    assert seen[-1] == "dtype=bfloat16" and len(seen) == 3
    cfg.model_args = ""
    assert _loader(cfg)("p") == "p"  # without --model-args the attacks load by path, as before


def test_bad_model_args_on_demo_is_one_line_before_any_work(tmp_path, capsys):
    assert main(["demo", "--preset", "tiny", "--out", str(tmp_path / "d"), "--model-args", "dtype=int3"]) == 2
    err = capsys.readouterr().err
    assert "dtype='int3'" in err and err.count("\n") == 1 and not (tmp_path / "d").exists()


def test_help_lists_the_global_flags(capsys):
    with pytest.raises(SystemExit):
        main(["unlearn", "--help"])
    out = capsys.readouterr().out
    for flag in ("--quiet", "--json", "--print-config", "--original-model", "--lora, --no-lora", "--model-args"):
        assert flag in out, flag
    assert "--ref-model" not in out  # a deprecated spelling is hidden (docs/cli.md lists it)


# results.json: numbers as numbers

def _eval(fq, prob, nc=None):
    return {"aggregates": {"forget_quality": fq}, "splits": {"forget": {"means": {"prob": prob}}},
            "not_computed": nc or {}}


def test_results_json_headline_is_numbers_with_hand_computed_spread():
    from obliviate.report.results import headline_json
    from obliviate.report.runs import get

    cols = [("Forget Quality", ("agg", "forget_quality"), True), ("forget Prob", ("forget", "prob"), False)]
    data = {"demo": {"retain_vs_itself": {"forget_quality": 1.0}},
            "target": _eval(0.01, 0.9), "retain": _eval(None, 0.5, {"forget_quality": "is the reference"}),
            "recipes": {"ga": [{"eval": _eval(0.1, 0.2)}, {"eval": _eval(0.3, 0.4)}, {"eval": _eval(0.2, None)}],
                        "npo": [{"eval": _eval(None, 0.3, {"forget_quality": "no retain model"})}]}}
    j = headline_json(data, cols, ["target", "retain", "ga", "npo"], get)
    assert j["rows"][0] == ["target", 1, 0.01, 0.9]
    assert j["rows"][1] == ["retain", 1, 1.0, 0.5] and "sanity check" in j["notes"]["retain"]
    # ga: FQ (a p-value column) is the median 0.2 with [min, max] = [0.1, 0.3]; Prob the mean of 0.2 and 0.4 with
    # the t-interval half-width t_{0.975, 1} * sd / sqrt(2) = 12.7062 * 0.141421 / 1.414214 = 1.27062
    assert j["rows"][2][:3] == ["ga", 3, 0.2] and j["spread"][2][2] == [0.1, 0.3]
    assert math.isclose(j["rows"][2][3], 0.3) and math.isclose(j["spread"][2][3], 1.27062, rel_tol=1e-5)
    assert j["rows"][3] == ["npo", 1, None, 0.3]
    assert j["null_reasons"] == {"npo": {"Forget Quality": "no retain model"}}
    json.dumps(j, allow_nan=False)


def test_results_json_attack_cells_are_numbers():
    from obliviate.report.results import cell, table_json

    assert cell("0.300 ± 1.27") == (0.3, 1.27)
    assert cell("0.5 [0.1–0.9]") == (0.5, [0.1, 0.9])
    assert cell("1.20e-05") == (1.2e-05, None)
    assert cell("—") == (None, None) and cell(4) == (4, None) and cell(float("nan")) == (None, None)
    assert cell("attacked (n=8)") == ("attacked (n=8)", None)
    t = table_json(["model", "seeds", "AUC"], [["ga", 2, "0.612 ± 0.05"], ["retain", 1, "—"]])
    assert t["rows"] == [["ga", 2, 0.612], ["retain", 1, None]] and t["spread"][0][2] == 0.05


def _help_flags(verb: str, attack: str | None = None) -> set[str]:
    """The option strings `VERB --help` shows (deprecated spellings are hidden; global flags left out)."""
    import argparse

    from obliviate.cli import GLOBAL_FLAGS, build_parser

    def sub(p, name):
        return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[name]

    p = sub(build_parser(verb), verb)
    p = sub(p, attack) if attack else p
    return {s for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings
            if s.startswith("--") and s not in GLOBAL_FLAGS and s != "--help"}


def test_docs_cli_table_lists_every_flag_help_shows():
    """docs/cli.md's "Every verb's flags" table and `--help` agree, flag for flag."""
    import re
    from pathlib import Path

    from obliviate.cli import VERBS

    text = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    table = text.split("## Every verb's flags", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] not in ("verb", "---"):
            rows[cells[0]] = set(re.findall(r"--[a-z][a-z0-9-]*", cells[1]))
    from obliviate.attack.registry import ATTACKS

    expected = {f"attack {a}": _help_flags("attack", a) for a in ATTACKS}
    expected.update({v: _help_flags(v) for v in VERBS if v != "attack"})
    assert set(rows) == set(expected)
    for verb, flags in expected.items():
        assert rows[verb] == flags, (verb, rows[verb] ^ flags)
