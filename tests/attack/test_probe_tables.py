"""The quantize / reformat / incontext tables over seeds: controls shown once, not-computed cells with the reason,
every column a METRICS record or a plain column, the plots draw, and `obliviate attack --help` lists them."""

import pytest

from obliviate.attack import probe_tables as T
from obliviate.attack.registry import ATTACKS
from obliviate.report.glossary import unexplained


def _quant(p4: float) -> dict:
    rows = [{"model": who, "bits": b, "forget_prob": p, "forget_rouge": 0.5, "forget_truth_ratio": 0.6,
             "retain_prob": 0.8, "recovery_prob": p / 0.9, "recovery_rouge": 0.5}
            for who, probs in (("model", {None: 0.1, 8: 0.1, 4: p4}), ("target", {None: 0.9, 8: 0.9, 4: 0.88}))
            for b, p in probs.items()]
    return {"rows": rows, "quantized": {"8": {"layers": 4, "group_sizes": [32]}}, "library": "torchao 0.18.0",
            "config": {"method": "rtn", "bits": [8, 4]}}


def _reformat(acc: float) -> dict:
    cell = {"accuracy": acc, "n": 8, "chance": 1 / 6}
    nc = {"not_computed": "the benchmark has no paraphrased questions for this split"}
    per = {s: {"mcq_letter": cell, "paraphrase": nc} for s in ("forget", "retain")}
    return {"config": {"splits": ["forget", "retain"]}, "formats": {"mcq_letter": "MCQ letter",
                                                                    "paraphrase": "paraphrased question"},
            "accuracy": {"model": per, "retain": per}, "letter_counts": {"forget": [2, 2, 1, 1, 1, 1]}}


def _incontext(p: float) -> dict:
    m = {"without": {"prob": 0.1, "rouge_l_recall": 0.2, "truth_ratio": 0.7},
         "with": {"prob": p, "rouge_l_recall": 0.3, "truth_ratio": 0.6}}
    return {"metrics": {"model": m, "target": m}, "n_evaluated": 4, "shown_items": [0, 1, 2, 3],
            "config": {"shots": 4}}


def test_quantize_table_shows_each_group_and_the_controls_once():
    headers, rows = T.quantize_table({"npo+gd": [_quant(0.5), _quant(0.7)], "ga+gd": [_quant(0.3)]})
    assert headers[:4] == ["model", "weights", "forget Prob", "recovery (Prob)"]
    assert [r[:2] for r in rows][:3] == [["npo+gd", "full precision"], ["npo+gd", "8-bit"], ["npo+gd", "4-bit"]]
    assert rows[2][2].startswith("0.600")  # the mean of 0.5 and 0.7 over seeds
    assert [r[0] for r in rows].count("target (control)") == 3 and "retain (control)" not in [r[0] for r in rows]
    assert unexplained(headers) == []


def test_reformat_and_incontext_tables():
    headers, rows = T.reformat_table({"npo+gd": [_reformat(0.5), _reformat(0.25)]})
    assert headers == ["model", "split", "format accuracy: MCQ letter", "format accuracy: paraphrased question"]
    assert rows[0][:3] == ["npo+gd", "forget", rows[0][2]] and rows[0][2].startswith("0.375")
    assert rows[0][3].startswith("not computed (the benchmark has no paraphrased")
    assert ["chance", "forget", "0.167", "—"] in rows and rows[1][0] == "retain (control)"
    assert unexplained(headers) == []
    headers, rows = T.incontext_table({"npo+gd": [_incontext(0.4), _incontext(0.6)]})
    assert headers[2:4] == ["Prob", "Prob + shots"] and rows[0][3].startswith("0.500")
    assert rows[1][0] == "target (control)" and unexplained(headers) == []


@pytest.mark.parametrize("name,result", [("quantize", _quant(0.5)), ("reformat", _reformat(0.5)),
                                         ("incontext", _incontext(0.5))])
def test_plots_and_summaries_draw(name, result):
    import matplotlib

    matplotlib.use("Agg")
    attack = ATTACKS[name]
    fig = attack.plot({"npo+gd": [result]}, None)
    assert fig.axes
    assert attack.summary(result)


def test_attack_help_lists_the_new_attacks(capsys):
    from obliviate.cli import main

    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    out = capsys.readouterr().out
    for name in ("quantize", "reformat", "incontext"):
        assert name in out


def test_the_pipeline_hands_controls_to_every_recipe(monkeypatch, world_dir, tmp_path):
    """An attack marked every_model runs on a recipe outside attack_recipes, and gets the run's target / retain
    models (its pipeline_models) and the run's control-evaluation cache in its config."""
    import dataclasses
    import json
    import shutil

    from obliviate.attack.registry import Attack
    from obliviate.pipeline import DemoConfig
    from obliviate.pipeline.chains import attack_stages
    from obliviate.stagecache import Stages
    from obliviate.unlearn import UnlearnConfig

    @dataclasses.dataclass
    class Cfg:
        forget: str = "forget10"
        eval_cache: str | None = None

    seen = {}

    def run(model, data, cfg, out, **kw):
        seen.update(cfg=cfg, **{k: kw.get(k) for k in ("original", "retain_model")})
        (out / "seen.json").write_text("{}")
        return {}

    monkeypatch.setitem(ATTACKS, "probe", Attack("probe", Cfg, run, "seen.json", None, None, "", every_model=True,
                                                 pipeline_models=("original", "retain_model")))
    out = tmp_path / "demo"
    shutil.copytree(world_dir, out / "world")
    run_dir = out / "runs" / "ga_gd" / "seed0"
    (run_dir / "eval").mkdir(parents=True)
    (run_dir / "eval" / "eval.json").write_text(json.dumps({"splits": {}}))
    cfg = DemoConfig(preset="tiny", seeds=1, out=str(out), recipes=["ga+gd", "npo+gd"], attacks=["probe"],
                     attack_recipes=["npo+gd"])
    attack_stages(cfg, Stages(out), run_dir, "ga+gd", 0, {"m": "k"}, UnlearnConfig(recipe="ga+gd"), {}, False)
    assert seen["original"] == out / "models" / "target" and seen["retain_model"] == out / "models" / "retain"
    assert seen["cfg"].eval_cache == str(out / "attack_cache")


def test_recovery_ratio():
    from obliviate.evaluate.metrics import recovery_ratio

    assert recovery_ratio(0.3, 0.6) == pytest.approx(0.5)
    assert recovery_ratio(None, 0.6) is None and recovery_ratio(0.3, 0.0) is None and recovery_ratio(0.3, None) is None


def test_cli_smoke_quantize_and_reformat(attack_target_dir, world_dir, tmp_path, capsys):
    import json

    from obliviate.cli import main

    target = str(attack_target_dir)
    assert main(["attack", "quantize", "--model", target, "--data", str(world_dir), "--original-model", target,
                 "--bits", "4", "--group-size", "32", "--out", str(tmp_path / "q"), "max_new_tokens=4"]) == 0
    out = capsys.readouterr().out
    assert "| target (control) | 4-bit |" in out and "group sizes {'4': [32]}" in out
    q = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert q["config"]["bits"] == [4] and (tmp_path / "q" / "quantize.png").is_file()
    assert main(["attack", "reformat", "--model", target, "--data", str(world_dir), "--formats", "mcq_text",
                 "--splits", "forget", "--out", str(tmp_path / "r")]) == 0
    assert "format accuracy: MCQ option text" in capsys.readouterr().out
    assert main(["attack", "quantize", "--model", target, "--data", str(world_dir), "--method", "zork",
                 "--out", str(tmp_path / "z")]) != 0
