"""Issue 28, defect 5: `--resume` with another `--original-model` continued silently; it now checks the reference
model and every input the numbers depend on (model, forget, retain, reference, refusals, tokenizer)."""

import json

from obliviate.cli import main


def _cmd(model, world, out, *extra):
    return ["unlearn", "--model", str(model), "--data", str(world), "--recipe", "npo", "--out", str(out),
            "max_steps=4", "batch_size=4", "lr=1e-3", "checkpoint_every=2", *extra]


def test_resume_refuses_another_reference_model(unlearn_target_dir, base_dir, world_dir, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(_cmd(unlearn_target_dir, world_dir, out, "--original-model", str(unlearn_target_dir))) == 0
    assert json.loads((out / "run.json").read_text())["inputs"]["ref_model_fingerprint"]
    (out / "model.safetensors").unlink()  # as if killed before the end
    capsys.readouterr()
    assert main(_cmd(unlearn_target_dir, world_dir, out, "--original-model", str(base_dir), "--resume")) == 2
    err = capsys.readouterr().err
    assert "cannot resume, the reference model (--original-model) differs" in err and len(err.strip().splitlines()) == 1
    assert main(_cmd(unlearn_target_dir, world_dir, out, "--original-model", str(unlearn_target_dir), "--resume")) == 0


def test_resume_refuses_other_refusals(unlearn_target_dir, world_dir, tmp_path, capsys):
    """idk reads the world's refusals.json: a resumed run with other refusals would train on other targets."""
    import shutil

    world = tmp_path / "w"
    shutil.copytree(world_dir, world)
    out = tmp_path / "r"
    cmd = ["unlearn", "--model", str(unlearn_target_dir), "--data", str(world), "--recipe", "idk", "--out", str(out),
           "max_steps=4", "batch_size=4", "checkpoint_every=2"]
    assert main(cmd) == 0
    (out / "model.safetensors").unlink()
    refusals = world / "refusals.json"
    assert refusals.is_file()
    refusals.write_text(json.dumps(["I cannot say.", "No idea."]))
    capsys.readouterr()
    assert main([*cmd, "--resume"]) == 2
    assert "the refusals" in capsys.readouterr().err
