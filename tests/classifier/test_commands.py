"""Tiny CPU smoke tests of `obliviate steal` and `obliviate invert` (seconds each)."""

import json

from obliviate.classifier.report import report_section
from obliviate.cli import main


def test_steal_cli_smoke(tmp_path, capsys):
    out = tmp_path / "steal"
    code = main(["steal", "--train-target", "digits", "--mode", "hee", "--out", str(out), "epochs=2", "n_c=2",
                 "n_g=2", "batch_size=16", "gen_batch=8", "target_epochs=1", "aa_n=4", "val_n=30", "val_every=1",
                 "eval_attacks=fgsm,pgd20,aa"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["queries"] == 2 * 2 * 16 and set(res["clone"]) == {"clean", "fgsm", "pgd20", "aa"}
    assert json.loads((out / "run.json").read_text())["config"]["mode"] == "hee"
    for f in ("report.html", "report.md", "learning_curves.png", "memory_bank.png", "clone/model.safetensors",
              "target/model.safetensors"):
        assert (out / f).exists(), f
    assert "DFHL-RS" in report_section(out)
    # reuse the saved target; a budget smaller than one batch stops before any query
    code = main(["steal", "--target", str(out / "target"), "--mode", "plain", "--budget", "10", "--out",
                 str(tmp_path / "s2"), "epochs=2", "n_c=2", "n_g=1", "batch_size=16", "gen_batch=8", "aa_n=0",
                 "eval_attacks=fgsm"])
    assert code == 0 and json.loads((tmp_path / "s2" / "results.json").read_text())["queries"] == 0


def test_invert_cli_smoke_and_errors(tmp_path, capsys):
    out = tmp_path / "inv"
    code = main(["invert", "--train-target", "digits", "--baseline", "all", "--out", str(out), "gan_iters=2",
                 "n_dis=1", "rec_steps=2", "target_epochs=1", "eval_epochs=1", "n_rec=2", "top_n=5"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == ["plg", "gmi", "no-guidance", "ce", "random"]
    assert all(0 <= v["acc1"] <= v["acc5"] <= 1 for v in res["methods"].values())
    assert (out / "reconstructions.png").exists() and "PLG-MI" in report_section(out)
    assert main(["invert", "--out", str(out), "top_n=100000"]) == 2
    assert main(["invert", "--out", str(out), "methods=gmi,bogus"]) == 2
    assert main(["steal", "--target", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "top_n=100000 exceeds" in err and "bogus" in err and "not found" in err
