"""Checkpoints of an unlearning run: `<out>/checkpoints/step-N/`, written atomically (`rundir.atomic_dir`).

    model.safetensors    the trainable parameters (safetensors: loading runs no code)
    state.pt             optimizer + scheduler state and the torch RNG (tensors and numbers only,
                         read back with torch.load(weights_only=True))
    tracker.safetensors  weight-averaging sums (wa only)
    trainer.json         step and the log rows so far (and the trajectory's state, `unlearn.trajectory`)
    checkpoints/kept/    the kept evaluation point's trainable weights (keep=best or a guard)

`check_run_dir` claims a run directory and refuses to resume another run into it.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from obliviate import ObliviateError
from obliviate.models.tracking import TRACKING_FIELDS
from obliviate.reader import read_json_object
from obliviate.rundir import atomic_dir, claim, remove_entry, remove_ours, write_json

RUN_FILES = ("log.jsonl", "checkpoints", "summary.json", "trajectory.jsonl", "trackers")
# config keys a resumed run may change: they do not change the numbers (the loss is the same whatever the split;
# a tracker only records them: models.tracking.TRACKING_FIELDS)
RESUMABLE = ("checkpoint_every", "keep_checkpoints", "micro_batch", "grad_accum", "max_memory", *TRACKING_FIELDS)


def checkpoints_root(out: str | Path) -> Path:
    """`<out>/checkpoints`, refused if it is a symlink: checkpoints are written and pruned only inside the run dir."""
    root = Path(out) / "checkpoints"
    if root.is_symlink():
        raise ObliviateError(f"{root}: is a symlink (to {root.readlink()}); a run's checkpoints are never written or "
                             "deleted through a link, remove it")
    return root


def checkpoint_dir(out: str | Path, step: int) -> Path:
    return checkpoints_root(out) / f"step-{step}"


def _step_dirs(root: Path) -> list[Path]:
    """Real `step-N` directories (lstat: a symlink named step-N is not one), oldest first."""
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.name[:5] == "step-" and d.name[5:].isdigit()
            and stat.S_ISDIR(d.lstat().st_mode)]
    return sorted(dirs, key=lambda d: int(d.name[5:]))


def latest_checkpoint(out: str | Path) -> Path | None:
    done = [d for d in _step_dirs(checkpoints_root(out)) if (d / "trainer.json").is_file()]
    return done[-1] if done else None


def prune_checkpoints(out: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints (the final model lives outside checkpoints/). Never follows a
    symlink: a linked `checkpoints` is refused (`checkpoints_root`), a link inside is not a checkpoint, and
    `remove_entry` unlinks links within a step directory instead of entering them."""
    done = _step_dirs(checkpoints_root(out))
    old = done[:-keep] if keep > 0 else done
    for d in old:
        remove_entry(d)
    return old


def save_checkpoint(out, step: int, params, optimizer, scheduler, tracker, log: list[dict], *,
                    keep: int | None = None, extra: dict | None = None) -> Path:
    """Write checkpoint `step` atomically (`extra` joins trainer.json); then keep only the newest `keep` (None:
    keep all)."""
    final = checkpoint_dir(out, step)
    with atomic_dir(final) as tmp:
        save_file({n: p.detach().contiguous().cpu() for n, p in params}, tmp / "model.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "state.pt")
        if tracker is not None:
            save_file({k: v.contiguous() for k, v in tracker.state_dict().items()}, tmp / "tracker.safetensors")
        write_json(tmp / "trainer.json", {"step": step, "log": log, **(extra or {})}, indent=None)
    if keep is not None:
        prune_checkpoints(out, keep)
    return final


def load_checkpoint(path: Path, params, optimizer, scheduler, tracker) -> tuple[int, list[dict]]:
    """Restore everything `save_checkpoint` wrote; returns (step, log rows)."""
    weights = load_file(path / "model.safetensors")
    missing = [n for n, _ in params if n not in weights]
    if missing:
        raise ObliviateError(f"{path}/model.safetensors: no tensor '{missing[0]}'; was the run started with "
                             "another model or recipe?")
    with torch.no_grad():
        for n, p in params:
            p.copy_(weights[n].to(p.device, p.dtype))
    state = torch.load(path / "state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if tracker is not None:
        tracker.load_state_dict(load_file(path / "tracker.safetensors"))
    info = read_json_object(path / "trainer.json")
    return int(info["step"]), list(info["log"])


def check_run_dir(out: Path | None, cfg, inputs: dict, *, resume: bool, overwrite: bool) -> None:
    """Claim `out` (rundir.claim); refuse a finished run unless resume/overwrite; resume only the same run.

    inputs: {"model_fingerprint", "forget_hash", "retain_hash", "ref_model_fingerprint", "refusals_hash",
    "tokenizer_hash"} of this run: everything the numbers depend on, compared with run.json on resume.
    """
    if out is None:
        return
    claim(out)
    used = [f for f in RUN_FILES if (out / f).exists()]
    if used and not resume and not overwrite:
        raise ObliviateError(f"{out}: already holds an unlearning run ({used[0]}); pass resume to continue it, "
                             "overwrite to start again, or choose another output directory")
    if overwrite and not resume:
        remove_ours(out, used)
    if resume and (out / "run.json").is_file():
        info = read_json_object(out / "run.json", what="the run to resume,")
        old = info.get("config", {})
        now = json.loads(json.dumps(vars(cfg), default=str))
        diff = next((k for k in now if k not in RESUMABLE and k in old and old[k] != now[k]), None)
        if diff:
            raise ObliviateError(f"{out}/run.json: cannot resume, config key '{diff}' was {old[diff]!r}, "
                                 f"now {now[diff]!r}")
        what = {"model_fingerprint": "the model (--model)", "forget_hash": "the forget data (--forget)",
                "retain_hash": "the retain data (--retain)", "ref_model_fingerprint": "the reference model (--original-model)",
                "refusals_hash": "the refusals (refusals.json)", "tokenizer_hash": "the tokenizer"}
        diff = next((k for k in what if k in info.get("inputs", {}) and info["inputs"][k] != inputs[k]), None)
        if diff:
            raise ObliviateError(f"{out}/run.json: cannot resume, {what[diff]} differs from the interrupted run's "
                                 f"({info['inputs'][diff]} then, {inputs[diff]} now)")
