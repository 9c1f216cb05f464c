"""Evaluation during training: the probe at step 0 and every `eval_every`, the stop / guard rules, the kept point.

    traj = Trajectory.build(cfg, probe, on_probe, reference, out, per_epoch=8, total=40)   # None: off
    point = traj.at(step, params, row)     # a trajectory record when `step` is an evaluation point, else None
    traj.notify(point)                     # on_probe(point): may raise (optuna.TrialPruned); the run dir is saved

`probe(model) -> {metric: value}` is built by the caller (`evaluate.probes.build_probe`: unlearn cannot import
evaluate). Each evaluation point is one line of `<out>/trajectory.jsonl`: step, epoch, lr, the step's losses,
every probe metric, the probe's seconds and the training seconds so far. Rules (`unlearn.rules`):
- `stop` holds → the run ends there (also at step 0: nothing to do);
- `guard` fails → the run ends and keeps the last evaluation point that passed (step 0 always passes);
- `keep=best` keeps the admissible point `select` prefers (ties: the earlier), else the last step.
The kept weights (trainable parameters only) are written to `<out>/checkpoints/kept/` (in memory without `out`);
with a step checkpoint at every evaluation point and only the newest one kept, at most two checkpoints are on
disk. The whole state rides in each step checkpoint's trainer.json, so `--resume` continues the trajectory, the
rules and the selection exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from obliviate import ObliviateError
from obliviate.reader import read_json_object
from obliviate.rundir import atomic_dir, write_json, write_json_lines
from obliviate.unlearn.config import UnlearnConfig
from obliviate.unlearn.rules import Rule, Selection, parse_rule, parse_select

LOSS_KEYS = ("loss", "forget", "retain", "grad_norm", "lam")


def kept_dir(out: str | Path) -> Path:
    return Path(out) / "checkpoints" / "kept"


@dataclass
class Trajectory:
    """The evaluation points of one run and what the rules made of them (see the module docstring)."""

    cfg: UnlearnConfig
    probe: Callable[[Any], dict]
    on_probe: Callable[[dict], Any] | None
    reference: dict | None
    out: Path | None
    per_epoch: int
    total: int
    every: int
    stop: Rule | None = None
    guard: Rule | None = None
    select: Selection | None = None
    records: list[dict] = field(default_factory=list)
    start_metrics: dict | None = None
    kept: dict | None = None  # {"step", "score", "metrics"} of the kept point
    ended: str | None = None  # "stop" | "guard" | None (ran to the cap)
    probe_seconds: float = 0.0
    train_seconds: float = 0.0  # the step loop's wall time without probes, up to the last evaluation point
    memory: dict | None = None  # the kept weights when there is no run directory
    _clock: float = field(default_factory=time.perf_counter)

    @classmethod
    def build(cls, cfg: UnlearnConfig, probe, on_probe, reference: dict | None, out: Path | None, *,
              per_epoch: int, total: int) -> Trajectory | None:
        """The run's trajectory, its rules checked against `probe.names` (before any model work); None when
        there is neither `eval_every` nor a probe (a plain run)."""
        stop, guard, select = cls.check(cfg, probe, reference)
        if probe is None:
            return None
        every = total if cfg.eval_every is None else per_epoch if cfg.eval_every == "epoch" else int(cfg.eval_every)
        return cls(cfg=cfg, probe=probe, on_probe=on_probe, reference=reference, out=out, per_epoch=per_epoch,
                   total=total, every=max(1, every), stop=stop, guard=guard, select=select)

    @staticmethod
    def check(cfg: UnlearnConfig, probe, reference: dict | None) -> tuple[Rule | None, Rule | None, Selection | None]:
        """The stop, guard and select rules parsed against `probe.names`; a rule reading retain:<metric> needs
        `reference`. Pure: called before any model work."""
        if probe is None:
            if cfg.eval_every is not None:
                raise ObliviateError(f"eval_every={cfg.eval_every} needs a probe (unlearn(..., probe=...), built by "
                                     "obliviate.evaluate.probes.build_probe; the CLI builds it from --data)")
            return None, None, None
        names = getattr(probe, "names", None)
        stop, guard = (parse_rule(getattr(cfg, k), names) if getattr(cfg, k) is not None else None
                       for k in ("stop", "guard"))
        select = parse_select(cfg.select, names) if cfg.select is not None else None
        for rule in (x for x in (stop, guard, select) if x is not None):
            missing = sorted(m for m in rule.references() if (reference or {}).get(m) is None)
            if missing and reference is None:
                raise ObliviateError(f"rule '{rule}' reads retain:{missing[0]}: give --reference-eval (a retain or "
                                     "holdout model's eval.json)")
            if missing:
                raise ObliviateError(f"rule '{rule}' reads retain:{missing[0]}, which the reference evaluation does "
                                     "not give (not computed there, or not on the probe's items)")
        return stop, guard, select

    # ------------------------------------------------------------------------------------------ points

    def due(self, step: int) -> bool:
        return step == 0 or step % self.every == 0 or step == self.total

    def stores_weights(self) -> bool:
        """Whether the kept point's weights are saved (keep=best, or a guard that may send the run back)."""
        return self.cfg.keep == "best" or self.guard is not None

    def at(self, step: int, model, params, row: dict | None) -> dict | None:
        """At an evaluation point: probe `model`, apply the rules, save the kept weights; the trajectory record."""
        if not self.due(step):
            return None
        now = time.perf_counter()
        self.train_seconds += now - self._clock if step else 0.0
        metrics, seconds = self._probe(model)
        self.probe_seconds += seconds
        record = {"step": step, "epoch": round(step / self.per_epoch, 4), "lr": row["lr"] if row else None,
                  **{k: row[k] for k in LOSS_KEYS if row and k in row}, "metrics": metrics,
                  "probe_seconds": round(seconds, 3), "train_seconds": round(self.train_seconds, 3)}
        if step == 0:
            self.start_metrics = metrics
        record.update(self._decide(step, metrics, params))
        self.records.append(record)
        if self.out is not None:
            write_json_lines(self.out / "trajectory.jsonl", self.records)
        self._clock = time.perf_counter()
        return record

    def notify(self, record: dict | None) -> None:
        if record is not None and self.on_probe is not None:
            self.on_probe(record)

    def _probe(self, model) -> tuple[dict, float]:
        """The probe's metrics at these weights (eval mode, the RNG untouched: the run's numbers stay those of
        a run without probes) and its seconds."""
        t = time.perf_counter()
        was_training = model.training
        model.eval()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            metrics = {k: (None if v is None else float(v)) for k, v in self.probe(model).items()}
        model.train(was_training)
        return metrics, time.perf_counter() - t

    def _decide(self, step: int, metrics: dict, params) -> dict:
        """Guard, selection and stop at one point; the record's rule fields."""
        args = (metrics, self.start_metrics, self.reference)
        out: dict[str, Any] = {}
        if self.guard is not None:
            out["guard"] = step == 0 or self.guard.holds(*args)
            if not out["guard"]:
                self.ended = "guard"
                return out
        if self.select is not None:
            score = self.select.score(*args)
            out["score"] = score
            if self.select.admissible(*args) and self.select.better(score, (self.kept or {}).get("score")):
                self._keep(step, metrics, params, score)
        elif self.stores_weights():
            self._keep(step, metrics, params, None)
        if self.stop is not None:
            out["stop"] = self.stop.holds(*args)
            if out["stop"]:
                self.ended = "stop"
        return out

    def _keep(self, step: int, metrics: dict, params, score: float | None) -> None:
        self.kept = {"step": step, "score": score, "metrics": metrics}
        weights = {n: p.detach().contiguous().cpu().clone() for n, p in params}
        if self.out is None:
            self.memory = weights
            return
        with atomic_dir(kept_dir(self.out)) as tmp:
            save_file(weights, tmp / "model.safetensors")
            write_json(tmp / "kept.json", {"step": step})

    # ------------------------------------------------------------------------------------ resume, finish

    def state(self) -> dict:
        """What a step checkpoint carries (trainer.json) so a resumed run continues exactly."""
        return {"records": self.records, "start_metrics": self.start_metrics, "kept": self.kept, "ended": self.ended,
                "probe_seconds": self.probe_seconds, "train_seconds": self.train_seconds}

    def restore(self, state: dict | None, checkpoint: Path) -> None:
        if state is None:
            raise ObliviateError(f"{checkpoint}/trainer.json: no trajectory state; this checkpoint was written "
                                 "without eval_every, so the run cannot resume with it")
        self.records, self.start_metrics = list(state["records"]), state["start_metrics"]
        self.kept, self.ended = state["kept"], state["ended"]
        self.probe_seconds, self.train_seconds = state["probe_seconds"], state["train_seconds"]
        self._clock = time.perf_counter()
        if self.out is not None:
            write_json_lines(self.out / "trajectory.jsonl", self.records)

    def load_kept(self, params, last_step: int) -> bool:
        """Put the kept point's weights into `params` when it is not the last step run; whether it did."""
        if self.kept is None or not self.stores_weights() or self.kept["step"] == last_step:
            return False
        if self.out is None:
            weights = self.memory
        else:
            info = read_json_object(kept_dir(self.out) / "kept.json")
            if info["step"] != self.kept["step"]:
                raise ObliviateError(f"{kept_dir(self.out)}: holds step {info['step']}, the run kept step "
                                     f"{self.kept['step']}; resume the run to rewrite it")
            weights = load_file(kept_dir(self.out) / "model.safetensors")
        with torch.no_grad():
            for n, p in params:
                p.copy_(weights[n].to(p.device, p.dtype))
        return True

    def summary(self, last_step: int) -> dict:
        """run.json / summary.json's account: where it ended and why, the kept point and the rule that chose it,
        probe time apart from training time."""
        kept = self.kept if (self.kept is not None and self.stores_weights()) else None
        kept_step = kept["step"] if kept else last_step
        by = (f"select: {self.select}" if self.cfg.keep == "best" and kept else
              f"guard failed: the last point that passed ({self.guard})" if self.ended == "guard" else
              f"stop: {self.stop}" if self.ended == "stop" else "keep=last: the last step")
        if self.ended is None and self.stop is not None:
            message = f"stop rule '{self.stop}' never fired: ran to the cap ({self.total} steps)"
        elif self.ended == "stop":
            message = f"stop rule '{self.stop}' fired at step {last_step} of {self.total}"
        elif self.ended == "guard":
            message = f"guard '{self.guard}' failed at step {last_step}"
        else:
            message = f"ran to the cap ({self.total} steps)"
        if self.cfg.keep == "best" and not kept:
            message += "; no point was admissible: kept the last step"
        elif self.cfg.keep == "best" or kept_step != last_step:
            message += f"; kept step {kept_step} ({by})"
        point = next((r for r in self.records if r["step"] == kept_step), None)
        return {"eval_every": self.cfg.eval_every, "every_steps": self.every, "points": len(self.records),
                "stop": self.cfg.stop, "guard": self.cfg.guard, "keep": self.cfg.keep, "select": self.cfg.select,
                "ended": self.ended or "cap", "stopped_at": last_step, "cap": self.total, "kept_step": kept_step,
                "kept_by": by, "kept_metrics": point["metrics"] if point else None, "message": message,
                "reference": self.reference,
                "probe_seconds": round(self.probe_seconds, 3), "train_seconds": round(self.train_seconds, 3),
                "probe_fraction": round(self.probe_seconds / self.train_seconds, 4) if self.train_seconds else None}
