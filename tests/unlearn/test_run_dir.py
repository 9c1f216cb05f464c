"""Issue 9 on the unlearning run directory: --resume refuses another model or data, --overwrite keeps a user's
files, a second concurrent run is refused with one line, checkpoints are pruned to the newest N."""

import json
import os

import pytest

from obliviate import ObliviateError
from obliviate.cli import main


def _cmd(model, world, out, *extra):
    return ["unlearn", "--model", str(model), "--data", str(world), "--recipe", "ga", "--out", str(out),
            "max_steps=4", "batch_size=4", "lr=1e-3", *extra]


def test_resume_refuses_another_model_or_forget_or_retain(unlearn_target_dir, base_dir, world_dir, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(_cmd(unlearn_target_dir, world_dir, out, "--recipe", "ga+gd", "checkpoint_every=2")) == 0
    inputs = json.loads((out / "run.json").read_text())["inputs"]
    assert set(inputs) == {"model_fingerprint", "forget_hash", "retain_hash", "ref_model_fingerprint", "refusals_hash",
                           "tokenizer_hash"}
    assert all(inputs[k] for k in ("model_fingerprint", "forget_hash", "retain_hash", "tokenizer_hash"))
    (out / "model.safetensors").unlink()  # as if killed before the end: checkpoints, run.json, no final model
    capsys.readouterr()
    assert main(_cmd(base_dir, world_dir, out, "--recipe", "ga+gd", "checkpoint_every=2", "--resume")) == 2
    assert "the model (--model) differs" in capsys.readouterr().err
    assert main(_cmd(unlearn_target_dir, world_dir, out, "--recipe", "ga+gd", "checkpoint_every=2", "--resume",
                     "--forget", "holdout10")) == 2
    assert "the forget data (--forget) differs" in capsys.readouterr().err
    assert main(_cmd(unlearn_target_dir, world_dir, out, "--recipe", "ga+gd", "checkpoint_every=2", "--resume",
                     "--retain", "retain_perturbed")) == 2
    assert "the retain data (--retain) differs" in capsys.readouterr().err


def test_recipe_flag_and_smoothing_override_are_merged_in_run_json(unlearn_target_dir, world_dir, tmp_path):
    out = tmp_path / "m"
    assert main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "smoothing=sam",
                 "--recipe", "npo+gd", "--out", str(out), "max_steps=2", "batch_size=4"]) == 0
    c = json.loads((out / "run.json").read_text())["config"]
    assert (c["recipe"], c["smoothing"]) == ("npo+gd+sam", "sam")


def test_checkpoints_are_pruned_to_the_newest_n(unlearn_target_dir, world_dir, tmp_path):
    out = tmp_path / "p"
    assert main(_cmd(unlearn_target_dir, world_dir, out, "max_steps=7", "checkpoint_every=1")) == 0
    assert sorted(d.name for d in (out / "checkpoints").iterdir()) == ["step-5", "step-6"]
    assert (out / "model.safetensors").is_file()
    out3 = tmp_path / "p3"
    assert main(_cmd(unlearn_target_dir, world_dir, out3, "max_steps=5", "checkpoint_every=1",
                     "keep_checkpoints=3")) == 0
    assert sorted(d.name for d in (out3 / "checkpoints").iterdir()) == ["step-2", "step-3", "step-4"]


def test_overwrite_never_touches_a_users_directory(unlearn_target_dir, world_dir, tmp_path, capsys):
    user = tmp_path / "u"
    (user / "checkpoints").mkdir(parents=True)
    (user / "checkpoints" / "precious.ckpt").write_text("weeks of training")
    assert main(_cmd(unlearn_target_dir, world_dir, user, "--overwrite")) == 2
    assert "obliviate did not create" in capsys.readouterr().err
    assert (user / "checkpoints" / "precious.ckpt").read_text() == "weeks of training"


def test_second_concurrent_run_is_refused(unlearn_target_dir, world_dir, tmp_path, capsys):
    import subprocess
    import sys

    out = tmp_path / "c"
    from obliviate.rundir import claim

    claim(out)
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom obliviate.rundir import lock\n"
                               f"with lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)  # a live run holds the directory
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(_cmd(unlearn_target_dir, world_dir, out)) == 2
        err = capsys.readouterr().err.strip()
        assert f"another obliviate run (pid {holder.pid})" in err and len(err.splitlines()) == 1
        assert not (out / "log.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(_cmd(unlearn_target_dir, world_dir, out)) == 0  # the holder died (kill -9): the kernel freed the lock


def test_library_unlearn_overwrite_removes_only_its_own_files(target, splits, tmp_path):
    from obliviate.unlearn import UnlearnConfig, unlearn

    model, tok = target
    out = tmp_path / "lib"
    cfg = UnlearnConfig(recipe="ga", max_steps=2, batch_size=4, lr=1e-3)
    unlearn(model, tok, splits[0], None, cfg, out_dir=out, progress=False)
    (out / "mine.txt").write_text("user")
    with pytest.raises(ObliviateError, match="already holds an unlearning run"):
        unlearn(model, tok, splits[0], None, cfg, out_dir=out, progress=False)
    unlearn(model, tok, splits[0], None, cfg, out_dir=out, overwrite=True, progress=False)
    assert (out / "mine.txt").read_text() == "user" and os.path.isfile(out / "summary.json")
