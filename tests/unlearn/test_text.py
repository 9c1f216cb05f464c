"""Raw-text unlearning (MUSE raw, WMDP corpora, RWKU passages): chunking, the text-capable objectives, refusals."""

import json
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.cli import main
from obliviate.data.benchmarks import load_role
from obliviate.data.format import encode_text_chunks
from obliviate.unlearn import UnlearnConfig, unlearn
from obliviate.unlearn.batch import build_data

FIX = Path(__file__).parents[1] / "fixtures"


def test_text_is_chunked_to_max_length_every_token_a_label(target):
    _, tok = target
    text = load_role("muse-news", FIX / "muse-news", "forget_train")[0]["text"]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    chunks = encode_text_chunks(tok, text, max_length=16)
    assert all(len(c["input_ids"]) <= 16 and c["labels"] == c["input_ids"] for c in chunks)
    assert [t for c in chunks for t in c["input_ids"]] == [tok.bos_token_id] + ids  # nothing lost, nothing added
    data = build_data(tok, [{"text": text}] * 2, [{"text": "short retain text here"}], {"retain"}, max_length=16)
    assert len(data.forget) == 2 * len(chunks) and len(data.retain) == 1


@pytest.mark.parametrize("recipe", ["ga", "npo+gd", "simnpo+kl", "me+gd", "rmu"])
def test_text_objectives_train(target, recipe):
    model, tok = target
    forget = load_role("muse-news", FIX / "muse-news", "forget_train")
    retain = load_role("muse-news", FIX / "muse-news", "retain_train")
    cfg = UnlearnConfig(recipe=recipe, max_steps=3, batch_size=2, lr=3e-3, max_length=32, warmup_epochs=0)
    _, log = unlearn(model, tok, forget, retain, cfg, progress=False)
    s = log.summary
    assert s["weights_changed"] and s["forget_items"] > len(forget)  # chunks, not records
    if recipe == "ga":
        assert s["forget_prob_after"] < s["forget_prob_before"]


@pytest.mark.parametrize("recipe", ["idk", "dpo", "ga+ap"])
def test_refusal_recipes_refuse_text_with_one_line(target, recipe):
    model, tok = target
    forget = load_role("wmdp", FIX / "wmdp", "forget_train")
    with pytest.raises(ObliviateError, match="raw text: use ga, npo, simnpo, me or rmu") as e:
        unlearn(model, tok, forget, forget, UnlearnConfig(recipe=recipe, max_steps=1), progress=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bench,recipe,said", [("muse-news", "npo+gd", ""), ("wmdp", "rmu", " (inferred from"),
                                              ("rwku", "ga", " (inferred from")])
def test_cli_unlearn_on_fixture_benchmarks(unlearn_target_dir, tmp_path, capsys, bench, recipe, said):
    out = tmp_path / bench
    choose = ["--benchmark", bench] if not said else []  # MUSE News / Books share one layout: named, not inferred
    assert main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(FIX / bench), "--recipe", recipe,
                 "--out", str(out), "max_steps=2", "batch_size=2", "lr=3e-3", "max_length=32", *choose]) == 0
    printed = capsys.readouterr().out
    assert f"benchmark: {bench}{said}" in printed
    meta = json.loads((out / "obliviate.json").read_text())
    assert meta["benchmark"] == bench and meta["forget"] == "forget_train"


def test_cli_rwku_retain_regulariser_needs_a_retain_split(unlearn_target_dir, tmp_path, capsys):
    assert main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(FIX / "rwku"), "--benchmark", "rwku",
                 "--recipe", "ga+gd", "--out", str(tmp_path / "r")]) == 2
    assert "benchmark rwku has none" in capsys.readouterr().err
