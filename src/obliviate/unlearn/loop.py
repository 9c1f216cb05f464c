"""The unlearning loop: batch → logps → loss → smoother step → log → checkpoint.

    model, log = unlearn(model, tokenizer, forget_records, retain_records, UnlearnConfig(recipe="npo+gd"))

Plain PyTorch driven by `accelerate.Accelerator` (so `accelerate launch` gives DDP/FSDP/DeepSpeed),
deterministic on CPU for a fixed seed, resumable from `<out_dir>/checkpoints/step-N/` to the same
weights as an uninterrupted run. The run's setup (the prepared model, the plan, optimiser and schedule in `_Run`)
is `unlearn.setup`; checkpoint files are `unlearn.checkpoint`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from obliviate import ObliviateError
from obliviate.reader import read_json_object
from obliviate.config import seed_everything, write_run_info
from obliviate.models.loading import model_size_name, save_model, weights_hash
from obliviate.models.tracking import log_step, start_trackers, stop_trackers
from obliviate.rundir import write_json, write_text
from obliviate.stats import check_finite_weights
from obliviate.unlearn.batch import (UnlearnData, answer_lengths, build_data, cache_ref_logps, collate, example_logps,
                                     micro_batches)
from obliviate.unlearn.checkpoint import check_run_dir, latest_checkpoint, load_checkpoint, save_checkpoint
from obliviate.unlearn.config import DUAL_STEP, UnlearnConfig
from obliviate.unlearn.fit import accumulation
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.regularizers import dual_ascent
from obliviate.unlearn.setup import (_accelerator, _check_inputs, _inputs, _layer_checkpointing, _prepare_model,
                                     _Run, _start, recipe_needs, sparse_tied_embedding)
from obliviate.unlearn.trajectory import Trajectory


AFTER_PENDING = "the evaluation that follows (not yet recorded)"  # summary["after_from"] of an after_probe=False run


class UnlearnLog(list):
    """The per-step rows; `.summary` holds forget probability before/after, steps, seconds, resolved lr."""

    summary: dict | None = None


@torch.no_grad()
def forget_probe(model, data: UnlearnData, sums: torch.Tensor | None = None) -> dict:
    """Mean answer probability exp(−NLL_mean) and mean log-prob on the forget set (one eval pass; none when
    `sums`, the forget log-probs at these very weights, were already computed: the reference cache)."""
    if sums is None:
        was_training = model.training
        model.eval()
        sums = example_logps(model, data.forget, data.pad_id)
        model.train(was_training)
    means = sums / answer_lengths(data.forget).clamp(min=1)
    return {"forget_prob": float(means.exp().mean()), "forget_mean_logp": float(means.mean())}


def unlearn(model, tokenizer, forget_records: list[dict], retain_records: list[dict] | None = None,
            cfg: UnlearnConfig | None = None, *, refusals: list[str] | None = None, out_dir=None,
            resume: bool = False, overwrite: bool = False, ref_model=None, progress: bool = True,
            probe=None, on_probe=None, reference: dict | None = None, after_probe: bool = True):
    """Unlearn `forget_records` from `model` with the recipe of `cfg`; returns (model, per-step log).

    `ref_model` is the reference when `cfg.reference == "original"` (continual unlearning); otherwise
    the reference is `model` as passed in. With `out_dir`, the run directory receives run.json, log.jsonl,
    summary.json, checkpoints and the final model (safetensors); `resume` continues from its last checkpoint.
    `probe(model) -> {metric: value}` (`evaluate.probes.build_probe`; its `.names` check the rules) runs at step 0
    and every `cfg.eval_every`; `on_probe(record)` gets each trajectory record after the point is saved (an
    exception it raises ends the run there, e.g. optuna.TrialPruned); `reference` holds the `retain:<metric>`
    values of the rules (`unlearn.trajectory`). `after_probe=False` skips the final forget probe, for a caller that
    evaluates the model next: the summary's `*_after` values are then None until `record_after` writes the
    evaluation's (the pipeline: its forget Prob and mean NLL are the probe's quantities on the same items).
    """
    cfg = cfg or UnlearnConfig()
    needs = recipe_needs(cfg)
    refusals = _check_inputs(cfg, needs, retain_records, refusals, ref_model)
    Trajectory.check(cfg, probe, reference)  # rule metric names against the probe's, before any work
    out = Path(out_dir) if out_dir is not None else None
    inputs = _inputs(model, tokenizer, forget_records, retain_records, refusals, ref_model, writes=out is not None)
    acc = _accelerator(cfg, out)  # multi-process: only the main process claims and writes `out`
    check_run_dir(out if acc.is_main_process else None, cfg, inputs, resume=resume, overwrite=overwrite)
    size = model_size_name(model)
    hp = cfg.hyperparams(size)
    seed_everything(cfg.seed)
    started = time.time()
    original = ref_model if cfg.reference == "original" else None
    data = build_data(tokenizer, forget_records, retain_records, needs, refusals=refusals, seed=cfg.seed,
                      max_length=cfg.max_length, recipe=cfg.recipe)
    if "ref_logps" in needs:  # log π_ref(y|x) once, before any update: no reference model during training
        cache_ref_logps(original or model, data)
    model, ref = _prepare_model(model, cfg, OBJECTIVES[cfg.objective], needs, original)
    before = forget_probe(model, data, data.ref_logps.get("forget") if original is None else None)
    r = _start(cfg, hp, model, ref, data, acc)
    r.out = out
    fingerprint = weights_hash(r.params)
    split = {"micro_batch": r.micro_batch, "grad_accum": accumulation(hp.batch_size, r.micro_batch,
                                                                      acc.num_processes)}
    traj = Trajectory.build(cfg, probe, on_probe, reference, out if acc.is_main_process else None,
                            per_epoch=r.per_epoch, total=r.total)
    start_trackers(acc, cfg, out)
    try:
        start, log = _resume(r, resume, {"inputs": inputs, **split}, traj)
        last_step = _steps(r, start, log, traj, progress)
    finally:  # also when on_probe ends the run (optuna.TrialPruned) or a step fails
        stop_trackers(acc)
        sparse_tied_embedding(acc.unwrap_model(r.model), on=False)
    if traj is not None:  # the kept point's weights (keep=best, a failed guard) and the account of the rules
        kept = traj.load_kept(r.params, last_step)
        split["trajectory"] = traj.summary(last_step)
        if progress and acc.is_main_process:
            print(split["trajectory"]["message"] + (" (kept weights loaded)" if kept else ""))
    if r.tracker is not None:
        r.tracker.finish()
    model = acc.unwrap_model(r.model, keep_fp32_wrapper=False).eval()  # a plain fp32 model: no autocast left
    return _finish(model, tokenizer, data, cfg, before, fingerprint == weights_hash(r.params), log,
                   out if acc.is_main_process else None, size=size, hp=hp, total=last_step if traj else r.total,
                   seconds=time.time() - started, split=split, after_probe=after_probe)


def _steps(r: _Run, start: int, log: list[dict], traj: Trajectory | None, progress: bool) -> int:
    """The optimiser steps from `start` to the cap, or until a rule ends the run (probing at step 0 and every
    evaluation point); returns the last step run."""
    from obliviate.rundir import progress_bar

    out = r.out if r.acc.is_main_process else None
    if traj is not None and start == 0:
        point = traj.at(0, r.model, r.params, None)
        log_step(r.acc, None, point)
        traj.notify(point)
    end = r.total if traj is None or traj.ended is None else start  # a resumed run that had already ended
    bar = progress_bar(range(start, end), desc=f"unlearn {r.cfg.recipe}", progress=progress)
    for step in bar:
        row = _update(r, step, _gradients(r, step))
        log.append(row)
        bar.set_postfix(forget=f"{row['forget']:.3f}")
        point = traj.at(step + 1, r.model, r.params, row) if traj is not None else None
        log_step(r.acc, {**row, **r.loss_weights(row)}, point)
        if out is not None:
            _record(r, out, step, row, log, traj, point)
        if point is not None:
            traj.notify(point)  # after the point's checkpoint: an exception here leaves a resumable run
            if traj.ended:
                break
    bar.close()
    return log[-1]["step"] if log else 0


def _resume(r: _Run, resume: bool, run_info: dict, traj: Trajectory | None) -> tuple[int, list[dict]]:
    """The first step and the log so far (from the last checkpoint when resuming; its λ and trajectory restored);
    run.json (with `run_info`) and log.jsonl written."""
    start, log = 0, []
    last = latest_checkpoint(r.out) if (r.out is not None and resume) else None
    if last is not None:
        start, log = load_checkpoint(last, r.params, r.opt, r.sched, r.tracker)
        if traj is not None:
            traj.restore(read_json_object(last / "trainer.json").get("trajectory"), last)
    if r.out is not None and r.acc.is_main_process:
        write_run_info(r.out, r.cfg, seed=r.cfg.seed, extra=run_info)
        write_text(r.out / "log.jsonl", "".join(json.dumps(row) + "\n" for row in log))
    r.lam = _resumed_lam(r.cfg, log, r.per_epoch)
    return start, log


def _gradients(r: _Run, step: int) -> dict[str, float]:
    """Accumulate the effective batch's gradient of step `step` into `.grad`, micro-batch by micro-batch; the
    batch's loss values (all processes)."""
    acc = r.acc
    batch = collate(r.data, r.batches[step]).to(acc.device)
    micro = micro_batches(batch, r.micro_batch, rank=acc.process_index, world=acc.num_processes,
                          keep_width=r.keep_width)
    parts = r.smoother.grad(r.step_closure(batch, micro, seed=r.cfg.seed * 1_000_003 + step))
    if acc.num_processes > 1:  # each process holds its shards' parts of the batch loss: they add up
        parts = dict(zip(parts, acc.reduce(torch.tensor(list(parts.values()), dtype=torch.float64), "sum").tolist()))
    return parts


def _update(r: _Run, step: int, parts: dict[str, float]) -> dict:
    """Clip, refuse a non-finite step, update, move the schedule / tracker / λ; the step's log row."""
    cfg = r.cfg
    for _, p in r.params:  # a backward through the embedding alone (sparse_tied_embedding) left a sparse gradient
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.to_dense()
    grad_norm = float(r.acc.clip_grad_norm_([p for _, p in r.params], cfg.grad_clip if cfg.grad_clip > 0 else math.inf))
    if not all(math.isfinite(v) for v in [*parts.values(), grad_norm]):
        kept = latest_checkpoint(r.out) if r.out is not None else None
        raise ObliviateError(f"non-finite loss or gradient at step {step + 1} ({parts}, grad_norm {grad_norm}); "
                             f"stopped before the update; last good checkpoint: {kept or 'none'}; lower the lr")
    r.opt.step()
    check_finite_weights(r.params, what=f"unlearn step {step + 1}")
    r.sched.step()
    r.opt.zero_grad(set_to_none=True)
    if r.tracker is not None:
        r.tracker.after_step(step + 1)
    row = {"step": step + 1, "epoch": round((step + 1) / r.per_epoch, 4), "lr": r.sched.get_last_lr()[0],
           "grad_norm": grad_norm, "loss": r.weigh(parts["forget"], parts.get("retain", 0.0)), **parts}
    if cfg.retain_constraint is not None:
        row["lam"] = r.lam  # the λ this step used; the next one follows from it and the row
        r.lam = _next_lam(cfg, row, r.per_epoch)
    return row


def _record(r: _Run, out: Path, step: int, row: dict, log: list[dict], traj: Trajectory | None = None,
            point: dict | None = None) -> None:
    """Append the row to log.jsonl; every `checkpoint_every` steps and at every evaluation point `point` (not the
    last step) save a checkpoint (with a trajectory: its state, and only the newest step checkpoint kept)."""
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    every = r.cfg.checkpoint_every and (step + 1) % r.cfg.checkpoint_every == 0
    if (every or point is not None) and step + 1 < r.total:
        extra = {"trajectory": traj.state()} if traj is not None else None
        save_checkpoint(out, step + 1, r.params, r.opt, r.sched, r.tracker, log,
                        keep=1 if traj is not None else r.cfg.keep_checkpoints, extra=extra)


def _next_lam(cfg: UnlearnConfig, row: dict, per_epoch: int) -> float:
    """λ for the step after `row`: dual ascent once `dual_warmup_epochs` epochs are done, else unchanged."""
    if row["step"] <= round((cfg.dual_warmup_epochs or 0.0) * per_epoch):
        return row["lam"]
    return dual_ascent(row["lam"], row["retain"], constraint=cfg.retain_constraint,
                       step=DUAL_STEP if cfg.dual_step is None else cfg.dual_step)


def _resumed_lam(cfg: UnlearnConfig, log: list[dict], per_epoch: int) -> float:
    """The initial λ, or on resume the λ after the checkpoint's last logged step (the log is in the checkpoint)."""
    if cfg.retain_constraint is None or not log:
        return cfg.lam
    return _next_lam(cfg, log[-1], per_epoch)


def _finish(model, tokenizer, data, cfg, before, unchanged_weights, log, out, *, size, hp, total, seconds, split,
            after_probe=True):
    """Warn when nothing changed, merge LoRA, save the model and summary. Without LoRA (nothing left to change in
    the weights) the model is saved in a thread while the 'after' probe reads the same weights; joined (and its
    error raised) before the summary is written."""
    extra = {"size": size, "recipe": cfg.recipe, "seed": cfg.seed}
    saved = None
    with ThreadPoolExecutor(1, thread_name_prefix="save") as pool:  # joined on leaving, also on an error
        if out is not None and not cfg.lora and not cfg.gradient_checkpointing:
            saved = pool.submit(save_model, model, tokenizer, out, extra=extra)
        after = forget_probe(model, data) if after_probe else dict.fromkeys(before)
    if saved is not None:
        saved.result()  # the save's own error, if any
    _warn_if_unchanged(before, after, unchanged_weights, stacklevel=4)
    if cfg.gradient_checkpointing:
        _layer_checkpointing(model, on=False)
    if cfg.lora:
        model = model.merge_and_unload()
    summary = {"recipe": cfg.recipe, "size": size, "lr": hp.lr, "epochs": hp.epochs, "batch_size": hp.batch_size,
               **split, "steps": total, "seconds": round(seconds, 2), "forget_items": len(data.forget),
               **{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()},
               "weights_changed": not unchanged_weights, **({} if after_probe else {"after_from": AFTER_PENDING})}
    log = UnlearnLog(log)
    log.summary = summary
    if out is not None:
        if saved is None:
            save_model(model, tokenizer, out, extra=extra)
        write_json(out / "summary.json", summary)
        if "trajectory" in summary:  # run.json records the kept step, the rule and its metrics
            info = read_json_object(out / "run.json")
            write_json(out / "run.json", {**info, "trajectory": summary["trajectory"]})
    return model, log


def _warn_if_unchanged(before: dict, after: dict, unchanged_weights: bool, stacklevel: int) -> None:
    """Warn when the weights are identical or the forget log-prob moved < 1e-4 (when the 'after' value is known)."""
    unchanged_loss = after["forget_mean_logp"] is not None and \
        abs(after["forget_mean_logp"] - before["forget_mean_logp"]) < 1e-4
    if unchanged_weights or unchanged_loss:
        warnings.warn(f"unlearning changed nothing measurable ({'weights identical' if unchanged_weights else ''}"
                      f"{'; ' if unchanged_weights and unchanged_loss else ''}"
                      f"{'forget log-prob moved < 1e-4' if unchanged_loss else ''}); check lr, steps and recipe",
                      stacklevel=stacklevel)


def record_after(out: Path, forget_prob: float, forget_mean_logp: float, source: str) -> dict:
    """The 'after' probe of a run made with `after_probe=False`, from the evaluation that followed it (`source`,
    e.g. its eval.json): written into `out`/summary.json with where it came from; the summary, updated. The
    values are the probe's quantities — mean over forget items of exp(mean answer log-prob), and the mean of
    those means — on the same items."""
    summary = read_json_object(out / "summary.json")
    if "after_from" not in summary:
        raise ObliviateError(f"{out / 'summary.json'}: the run took its own 'after' probe; nothing to record")
    after = {"forget_prob": forget_prob, "forget_mean_logp": forget_mean_logp}
    before = {k: summary[f"{k}_before"] for k in after}
    _warn_if_unchanged(before, after, False, stacklevel=3)  # identical weights were warned of by the run
    summary.update({f"{k}_after": v for k, v in after.items()}, after_from=source)
    write_json(out / "summary.json", summary)
    return summary
