"""Issue 23 §5: a demo run that evaluates during training gets a trajectory plot per recipe in its card, and each
recipe's row says which rule chose its models."""

import json

import pytest

from obliviate.pipeline import DemoConfig, run_demo

RULES = ("*:lr=3e-3,max_steps=6,batch_size=4,eval_every=2,probe_size=4,keep=best,"
         "select=min forget_prob subject to retain_prob >= 0.5 * start;"
         "npo+gd:stop=forget_prob <= retain:forget_prob + 0.05")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("traj_demo")
    cfg = DemoConfig(preset="tiny", seeds=1, out=str(out), model_size="micro", finetune_epochs=30,
                     finetune_batch_size=16, recipes=["ga+gd", "npo+gd"], attacks=[], max_new_tokens=8,
                     unlearn_overrides=RULES, jobs=1)
    return out, run_demo(cfg, progress=False)


def test_card_has_the_trajectory_plot_and_which_rule_chose_each_model(run):
    out, report = run
    html, md = report.read_text(), (out / "report.md").read_text()
    assert "How far each recipe went" in html and "How far each recipe went" in md
    assert (out / "trajectory.png").stat().st_size > 10_000 and "![trajectories](trajectory.png)" in md
    names = [r[0] for r in json.loads((out / "results.json").read_text())["rows"]]
    assert "ga+gd (kept by select: min forget_prob subject to retain_prob >= 0.5 * start)" in names
    assert any(n.startswith("npo+gd (kept by ") for n in names)


def test_the_pipeline_passes_its_retain_model_as_the_reference(run):
    out, _ = run
    info = json.loads((out / "runs" / "npo_gd" / "seed0" / "model" / "run.json").read_text())["trajectory"]
    assert info["stop"] == "forget_prob <= retain:forget_prob + 0.05" and info["reference"]["forget_prob"] is not None
    points = [json.loads(x) for x in (out / "runs" / "npo_gd" / "seed0" / "model" / "trajectory.jsonl").open()]
    assert [p["step"] for p in points][:2] == [0, 2] and points[-1]["step"] == info["stopped_at"]
    if info["ended"] == "stop":  # stopped where the forget probe reached the retain model's level (+ 0.05)
        assert points[-1]["metrics"]["forget_prob"] <= info["reference"]["forget_prob"] + 0.05
    else:
        assert info["ended"] == "cap" and "never fired" in info["message"]
