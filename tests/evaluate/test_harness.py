"""The lm-eval bridge (evaluate/harness.py) and the WMDP / MMLU conventions it pins (`mcq_*` in obliviate.parity).

lm-eval's own tasks run on the micro model from a local copy of the WMDP fixture in the hub's layout; under
``parity=open-unlearning`` our `mcq_eval` gives the same letter log-likelihoods, item by item.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.evaluate.config import EvalConfig
from obliviate.evaluate.mcq import lm_eval_description, mcq_eval
from obliviate.parity import convention

pytest.importorskip("lm_eval")

WMDP_TASKS = ("wmdp_bio", "wmdp_chem", "wmdp_cyber")
FIXTURE = Path(__file__).parents[1] / "fixtures" / "wmdp"
WMDP = ("wmdp-bio", "wmdp-chem", "wmdp-cyber")
MATH = {"question": "What is 7 times 8?", "subject": "elementary_mathematics", "choices": ["54", "56", "64", "48"],
        "answer": 1}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """tests/fixtures/wmdp copied into the hub layout lm-eval's tasks name: <dir>/cais/wmdp/<config>/test.jsonl."""
    root = tmp_path_factory.mktemp("hub")
    for config in WMDP:
        (root / "cais" / "wmdp" / config).mkdir(parents=True)
        shutil.copy(FIXTURE / config / "test.jsonl", root / "cais" / "wmdp" / config / "test.jsonl")
    math = root / "cais" / "mmlu" / "elementary_mathematics"  # MMLU: one folder per subject, test + dev
    math.mkdir(parents=True)
    for split in ("test", "dev"):
        (math / f"{split}.jsonl").write_text(json.dumps(MATH) + "\n")
    return root


@pytest.fixture(scope="module")
def manager():
    from lm_eval.tasks import TaskManager

    return TaskManager()


def _records(config):
    return [json.loads(line) for line in (FIXTURE / config / "test.jsonl").read_text().splitlines() if line.strip()]


def test_description_and_conventions_by_hand():
    """lm-eval's wmdp_bio.yaml:4 description, and MMLU's from the subject with spaces (mmlu_anatomy.yaml:2)."""
    assert lm_eval_description("wmdp_bio", {}) == \
        "The following are multiple choice questions (with answers) about biology.\n\n"
    assert lm_eval_description("mmlu", {"subject": "high_school_biology"}) == \
        "The following are multiple choice questions (with answers) about high school biology.\n\n"
    assert lm_eval_description("mmlu", {}) == ""
    assert [convention(c, "paper") for c in ("mcq_description", "mcq_bos", "mcq_metric")] == ["none", "always", "acc"]
    assert [convention(c, "open-unlearning") for c in ("mcq_description", "mcq_bos", "mcq_metric")] == \
        ["lm-eval", "tokenizer-default", "acc"]


def test_specs_point_each_task_at_its_local_file(hub, manager):
    from obliviate.evaluate.harness import task_specs

    [bio] = task_specs(["wmdp_bio"], hub, manager.task_index)
    assert bio["task"] == "wmdp_bio" and bio["dataset_path"] == "json" and bio["dataset_name"] is None
    assert bio["dataset_kwargs"]["data_files"] == {"test": str(hub / "cais/wmdp/wmdp-bio/test.jsonl")}
    assert bio["description"].endswith("about biology.\n\n")  # the task's own definition is kept
    [group] = task_specs(["wmdp"], hub, manager.task_index)
    assert group["group"] == "wmdp" and [t["task"] for t in group["task"]] == ["wmdp_bio", "wmdp_chem", "wmdp_cyber"]
    assert group["aggregate_metric_list"][0]["weight_by_size"] is True


def test_missing_local_copy_is_one_line_naming_the_path(tmp_path, manager):
    from obliviate.evaluate.harness import task_specs

    with pytest.raises(ObliviateError) as err:
        task_specs(["mmlu"], tmp_path, manager.task_index)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "cais/mmlu") in msg and "/test.jsonl" in msg
    with pytest.raises(ObliviateError, match="not an lm-eval task"):
        task_specs(["no_such_task"], tmp_path, manager.task_index)


def test_missing_package_names_the_extra(monkeypatch):
    from obliviate.evaluate import harness

    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(ObliviateError, match=r"obliviate\[harness\]"):
        harness.harness_tasks(EvalConfig(harness="lm-eval", tasks=["wmdp_bio"], embedder=None))


def test_results_keep_metrics_and_responses_by_hand():
    """`acc,none` → `acc`; a named filter stays; flags are not metrics; a generation response is kept as text."""
    from obliviate.evaluate.harness import _items, _metrics

    row = {"acc,none": 0.5, "acc_stderr,none": 0.1, "exact_match,strict-match": 0.25, "alias": "x", "flag,none": True}
    assert _metrics(row) == {"acc": 0.5, "acc_stderr": 0.1, "exact_match,strict-match": 0.25}
    samples = [{"doc_id": 0, "target": 2, "filtered_resps": [(-1.5, False), (-0.5, True)], "acc": 0.0},
               {"doc_id": 1, "target": "42", "filtered_resps": ["The answer is 42"]}]
    assert _items(samples) == [{"doc_id": 0, "target": 2, "loglikelihoods": [-1.5, -0.5], "acc": 0.0},
                               {"doc_id": 1, "target": "42", "loglikelihoods": ["The answer is 42"], "acc": None}]


def test_config_pairs_harness_and_tasks():
    assert EvalConfig(harness="lm-eval", tasks="wmdp_bio,mmlu").tasks == ["wmdp_bio", "mmlu"]
    with pytest.raises(ObliviateError, match="go together"):
        EvalConfig(tasks=["wmdp_bio"])
    with pytest.raises(ObliviateError, match="not one of"):
        EvalConfig(harness="helm", tasks=["wmdp_bio"])


def test_lm_eval_matches_mcq_under_open_unlearning(target, hub, manager):
    """lm-eval's per-item log-likelihoods of " A".." D" equal our `mcq_eval` with open-unlearning's conventions
    (description first, the tokenizer's own BOS); the group's acc is the sample-weighted mean of its tasks; and
    under `paper` (bare prompt, BOS) the scores move: the conventions are what differs."""
    from obliviate.evaluate.harness import harness_eval, task_specs

    model, tok = target
    cfg = EvalConfig(harness="lm-eval", tasks=["wmdp", "mmlu_elementary_mathematics"], harness_data=str(hub),
                     embedder=None, batch_size=4)
    res = harness_eval(model, tok, cfg, (manager, task_specs(cfg.tasks, hub, manager.task_index)))
    assert res["version"].startswith("0.4") and set(res["tasks"]) == {*WMDP_TASKS, "mmlu_elementary_mathematics"}
    mine = mcq_eval(model, tok, [MATH], role="mmlu", description="lm-eval", bos="tokenizer-default")["items"][0]
    assert mine["letter_logps"] == pytest.approx(res["tasks"]["mmlu_elementary_mathematics"]["items"][0]
                                                 ["loglikelihoods"], abs=2e-5)  # MMLU: the subject's description
    for config in WMDP:
        task = config.replace("-", "_")
        ours = mcq_eval(model, tok, _records(config), role=task, description="lm-eval", bos="tokenizer-default")
        paper = mcq_eval(model, tok, _records(config), role=task)
        theirs = res["tasks"][task]
        assert theirs["version"] == 1 and theirs["n"] == len(ours["items"])
        for mine, their, bare in zip(ours["items"], theirs["items"], paper["items"]):
            assert mine["letter_logps"] == pytest.approx(their["loglikelihoods"], abs=2e-5)
            assert float(mine["correct"]) == their["acc"]
            assert max(abs(a - b) for a, b in zip(bare["letter_logps"], their["loglikelihoods"])) > 1e-3
        assert theirs["metrics"]["acc"] == pytest.approx(ours["accuracy"])
    accs = [res["tasks"][t]["metrics"]["acc"] * res["tasks"][t]["n"] for t in WMDP_TASKS]
    assert res["groups"]["wmdp"]["metrics"]["acc"] == pytest.approx(sum(accs) / 6)
    assert res["groups"]["wmdp"]["n"] == 6 and set(res["groups"]) == {"wmdp"}


def test_cli_writes_harness_section(target_dir, hub, tmp_path):
    """`obliviate eval --harness lm-eval --tasks wmdp_bio` writes eval.json `harness` next to our own MCQ."""
    out = tmp_path / "eval"

    def cmd(data):
        return [sys.executable, "-m", "obliviate", "eval", "--model", str(target_dir), "--benchmark", "wmdp",
                "--data", str(FIXTURE), "--out", str(out), "--harness", "lm-eval", "--tasks", "wmdp_bio",
                "--harness-data", str(data), "--overwrite", "parity=open-unlearning", "embedder=null"]

    proc = subprocess.run(cmd(hub), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((out / "eval.json").read_text())
    assert res["harness"]["tasks"]["wmdp_bio"]["metrics"]["acc"] == res["mcq"]["wmdp_bio"]["accuracy"]
    assert res["parity"] == "open-unlearning" and res["conventions"]["mcq_description"] == "lm-eval"
    bad = subprocess.run(cmd(tmp_path / "nowhere"), capture_output=True, text=True)
    assert bad.returncode != 0 and str(tmp_path / "nowhere" / "cais/wmdp/wmdp-bio/test.jsonl") in bad.stderr
