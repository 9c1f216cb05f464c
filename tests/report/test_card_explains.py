"""Issue 26 §8: the report card explains itself. On a real tiny demo run (micro model, 1 seed): every metric column
of the card's tables carries ↑ / ↓ / → best and has a glossary row; an all-"—" column is hidden with a footnote
naming its not-computed reason; "Not computed" uses the tables' names; one seed gives one "claims need ≥ 2 seeds"
sentence instead of the claims table; the card says it is a smoke test on a model of the parameter count it read
from the run."""

import json
import re
import shutil
from html import escape
from html.parser import HTMLParser

import pytest

from obliviate.pipeline import DemoConfig, run_demo
from obliviate.report.card import write_report
from obliviate.report.glossary import PLAIN_COLUMNS, arrowed, glossary_rows, metrics_named, term

ARROW = re.compile(r" (↑|↓|→ \S+( %)?)$")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("card_demo")
    cfg = DemoConfig(preset="tiny", seeds=1, out=str(out), model_size="micro", finetune_epochs=30,
                     finetune_batch_size=16, recipes=["ga+gd", "npo+gd"], attacks=["relearn", "mia"], relearn_k=4,
                     relearn_steps=[2], max_new_tokens=8, jobs=1)
    return out, run_demo(cfg, progress=False)


class Tables(HTMLParser):
    """Every <table>'s header cells and body cells, as text."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._in = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"th": [], "td": []})
        elif tag in ("th", "td"):
            self._in, self._cell = tag, ""

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._in:
            self.tables[-1][tag].append(self._cell)
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._cell += data


def tables_of(html: str) -> list[dict]:
    p = Tables()
    p.feed(html)
    return p.tables


def test_every_metric_column_has_an_arrow_and_a_glossary_row(run):
    out, report = run
    tables = tables_of(report.read_text())
    glossary = next(t for t in tables if t["th"][:2] == ["term", "eval.json key"])
    terms = {cell.split(" / ")[0] for cell in glossary["td"][::5]}  # the glossary's first column
    metric_tables = [t for t in tables if t["th"][0] in ("model", "recipe")]
    assert len(metric_tables) >= 4  # the headline's two tables, relearn, MIA
    checked = 0
    for t in metric_tables:
        for header in t["th"]:
            if header in PLAIN_COLUMNS:
                continue
            assert ARROW.search(header), f"no ↑/↓ in {header!r}"
            name = ARROW.sub("", header)
            keys = metrics_named(name)
            assert keys, f"{header!r} names no METRICS record"
            assert term(keys[0]) in terms, f"{header!r}: no glossary row for {term(keys[0])!r}"
            checked += 1
    assert checked >= 15
    rows = {r[0]: r[2] for r in glossary_rows([("forget ROUGE", ""), ("retain ROUGE", ""), ("PrivLeak", "")])}
    assert rows == {"ROUGE": "↓ forget · ↑ retain", "PrivLeak": "→ 0 %"}


def test_arrows_read_the_split_and_the_table_role():
    assert arrowed("forget Prob") == "forget Prob ↓" and arrowed("retain Prob") == "retain Prob ↑"
    assert arrowed("Prob + string", role="forget") == "Prob + string ↓"  # an attack scoring forget items
    assert arrowed("retain Refusal") == "retain Refusal ↓" and arrowed("forget Refusal") == "forget Refusal ↑"
    assert arrowed("Forget Quality", role="forget") == "Forget Quality ↑"  # an aggregate never flips
    assert arrowed("MIA AUC (Min-K)") == "MIA AUC (Min-K) → 0.5" and arrowed("PrivLeak") == "PrivLeak → 0 %"
    assert arrowed("Min-K% gap to retain") == "Min-K% gap to retain → 0"
    assert arrowed("KnowMem forget") == "KnowMem forget ↓"  # "forget" is part of the metric's name here
    assert arrowed("model") == "model" and arrowed("step") == "step"
    assert metrics_named("FE (no ES)") == ["forget_efficacy_no_es"]  # not FE, not ES: the longer name wins
    assert metrics_named("AUC Min-K%++") == ["mia_auc", "mia_min_k_pp"]


def test_an_all_dash_column_is_hidden_with_its_reason(run):
    out, report = run
    html, md = report.read_text(), (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    es = results["headers"].index("forget ES")  # results.json keeps every column ...
    assert {r[es] for r in results["rows"]} == {None}  # not computed: null, its reason in null_reasons
    shown = [h for t in tables_of(html) for h in t["th"]]
    assert "forget ES ↓" not in shown and "forget ES" not in shown  # ... the card hides the empty one
    reason = results["not_computed"]["entailment_score"]
    assert len(reason) == 1
    note = f"Hidden, as no model has a value: forget ES ↓ — {next(iter(reason))}"
    assert note in md and escape(note) in html
    assert "forget Prob ↓" in shown  # a computed column stays


def test_hide_empty_keeps_a_column_with_one_value():
    from obliviate.report.explain import hide_empty, hidden_note

    reasons = {"entailment_score": {"no NLI model": ["target"]}}
    headers, rows, hidden = hide_empty(["model", "forget ES", "forget Prob", "forget TE"],
                                       [["a", "—", 0.5, None], ["b", None, "—", float("nan")]], reasons)
    assert headers == ["model", "forget Prob"] and rows == [["a", 0.5], ["b", "—"]]
    assert hidden == [("forget ES", "no NLI model"), ("forget TE", "no value for any model")]
    assert hidden_note(hidden) == ("Hidden, as no model has a value: forget ES — no NLI model; forget TE — no value "
                                   "for any model.")


def test_not_computed_uses_the_tables_names(run):
    out, report = run
    nc = next(t for t in tables_of(report.read_text()) if t["th"] == ["metric", "models", "reason"])
    names = nc["td"][::3]
    assert "ES" in names and "entailment_score" not in names
    assert not any("entailment_score" in reason for reason in nc["td"][2::3])  # "needs ES (not computed)"


def test_one_seed_says_claims_need_two_seeds_once(run, tmp_path):
    out, report = run
    html = report.read_text()
    assert html.count("Claims need ≥ 2 seeds per recipe: this run has 1") == 1
    assert not any(t["th"][:2] == ["claim", "verdict"] for t in tables_of(html))
    two = tmp_path / "two_seeds"  # the same run with a second seed: the claims table is back
    shutil.copytree(out, two)
    for recipe in ("ga_gd", "npo_gd"):
        shutil.copytree(two / "runs" / recipe / "seed0", two / "runs" / recipe / "seed1")
    html2 = write_report(two).read_text()
    assert "Claims need ≥ 2 seeds" not in html2
    assert any(t["th"][:2] == ["claim", "verdict"] for t in tables_of(html2))


def test_the_tiny_card_says_it_is_a_smoke_test_with_the_runs_parameter_count(run):
    from transformers import AutoModelForCausalLM

    out, report = run
    html, md = report.read_text(), (out / "report.md").read_text()
    n = AutoModelForCausalLM.from_pretrained(out / "models" / "target").num_parameters()
    said = f"Smoke test of the pipeline: the model is a {n / 1e6:.1f} M-parameter 'micro' model"
    assert said in md
    assert html.count(escape(said)) == 3  # the headline, and beside each table of sample answers
    assert html.count("gibberish answers are expected here") == 2


def test_a_pretrained_model_gets_no_smoke_note(tmp_path):
    from obliviate.report.explain import count_parameters, smoke_note

    assert smoke_note(tmp_path, {"base_model": "smollm2-135m-instruct"}) is None
    assert count_parameters(tmp_path) is None
    assert "parameter count not computed" in smoke_note(tmp_path, {"model_size": "tiny", "preset": "tiny"})


def test_the_tune_table_says_which_way_each_objective_is_better():
    from obliviate.report.tune import objective_header, trial_rows

    assert objective_header("min forget_prob subject to retain_prob >= 0.9 * start") == "objective ↓"
    assert objective_header("pareto max forget_gap, min forget_prob") == "objective ↑, ↓"
    headers, _ = trial_rows({"objective": "max model_utility", "trials": []})
    assert "objective ↑" in headers
