"""`accelerate launch` with two CPU processes (DDP over gloo) follows the same loss curve as one process with the
same global batch, and only the main process writes the run directory."""

import json

import pytest


@pytest.mark.slow
def test_two_processes_follow_the_single_process_loss_curve(unlearn_target_dir, world_dir, tmp_path,
                                                            one_and_two_processes):
    args = ["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "npo+gd",
            "max_steps=4", "lr=3e-3", "warmup_epochs=0", "batch_size=4"]
    _, two = one_and_two_processes(args)
    assert two.stdout.count("unlearned npo+gd") == 1  # the main process reports, the other stays quiet
    rows = {k: [json.loads(line) for line in (tmp_path / k / "log.jsonl").read_text().splitlines()]
            for k in ("one", "two")}
    assert len(rows["one"]) == len(rows["two"]) == 4
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["config"]["recipe"] == "npo+gd"
    for a, b in zip(rows["one"], rows["two"]):
        for key in ("loss", "forget", "retain", "grad_norm"):  # gloo all-reduce order: float noise only
            assert abs(a[key] - b[key]) <= 1e-4 * max(1.0, abs(a[key])), (a["step"], key, a[key], b[key])
    assert rows["one"][-1]["forget"] < rows["one"][0]["forget"] - 1  # the curve moved: the comparison means something
