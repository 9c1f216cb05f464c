"""Experiment tracking through accelerate's trackers: `log_with=tensorboard|wandb|trackio|mlflow`.

    acc = Accelerator(**tracker_kwargs(cfg.log_with, cfg.tracker_dir, out))    # {} when unset
    start_trackers(acc, cfg, out)                  # accelerator.init_trackers(...) with the resolved config
    log_values(acc, {"loss": 0.31, "lr": 1e-3}, step=5, prefix="train")    # accelerator.log: main process only
    stop_trackers(acc)                             # each tracker's finish()

No logger of our own: the Accelerator of the training loop is built with `log_with` / `project_dir` and logs through
`accelerator.log`, which runs on the main process only. With `log_with` unset the Accelerator gets no tracker
argument, nothing is logged and no tracker package is imported. `check_tracker` (called by the configs'
`__post_init__`, so before any model loads) refuses an unknown name and a tracker whose package is not installed,
naming the pip extra.

Where and under which name: `tracker_dir`, else `<run dir>/trackers`; the run is named after the run directory
(`run_name`; TensorBoard: `<tracker_dir>/<run name>/events.*`; wandb / trackio: project `obliviate`, run
`<run name>`; MLflow: experiment `obliviate`, run `<run name>`, tracking URI from MLFLOW_TRACKING_URI).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

from obliviate import ObliviateError

PROJECT = "obliviate"  # the wandb / trackio project and the MLflow experiment


TRACKING_FIELDS = ("log_with", "tracker_dir")  # config fields that record a run without changing its numbers


def result_fields(config) -> dict:
    """A config's fields without the tracking ones: what a cached result's key holds (a stage is not re-run, and
    `--resume` not refused, because a tracker was switched on)."""
    return {k: v for k, v in asdict(config).items() if k not in TRACKING_FIELDS}


@dataclass(frozen=True)
class Tracker:
    """An accelerate tracker: the packages any one of which provides it, and the pip extra that installs it."""

    packages: tuple[str, ...]
    extra: str


TRACKERS = {
    "tensorboard": Tracker(packages=("tensorboard", "tensorboardX"), extra="track"),
    "wandb": Tracker(packages=("wandb",), extra="wandb"),
    "trackio": Tracker(packages=("trackio",), extra="trackio"),
    "mlflow": Tracker(packages=("mlflow",), extra="mlflow"),
}


def tracker_available(name: str) -> bool:
    """Whether a package of tracker `name` is installed (found, not imported)."""
    return any(importlib.util.find_spec(p) is not None for p in TRACKERS[name].packages)


def check_tracker(log_with: str | None) -> None:
    """An unknown tracker name, or one whose package is missing: a one-line error (before any model loads)."""
    if log_with is None:
        return
    if log_with not in TRACKERS:
        raise ObliviateError(f"log_with {log_with!r} is unknown; choose one of {', '.join(TRACKERS)}")
    if not tracker_available(log_with):
        t = TRACKERS[log_with]
        raise ObliviateError(f"log_with={log_with} needs the {t.packages[0]} package, which is not installed: "
                             f"pip install 'obliviate[{t.extra}]'")


def run_name(out: str | Path | None, *, nested: bool) -> str:
    """The tracked run's name, from its run directory (a pipeline stage's `<dir>.partial` work directory: `<dir>`).
    `nested` (the tracker writes inside the run directory): the directory's name; else its path (relative to the
    current directory when below it), so that runs sharing a `tracker_dir` or a wandb project do not collide (a
    pipeline's `runs/npo_gd/seed0/model` and `runs/ga_gd/seed0/model`)."""
    if out is None:
        return "run"
    p = Path(out)
    p = p.with_name(p.name.removesuffix(".partial")).resolve()
    if nested:
        return p.name
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.as_posix().lstrip("/")


def tracker_kwargs(log_with: str | None, tracker_dir: str | None, out: str | Path | None) -> dict:
    """`Accelerator(...)` arguments: none when `log_with` is unset, else the tracker and its directory
    (`tracker_dir`, else `<out>/trackers`)."""
    if log_with is None:
        return {}
    check_tracker(log_with)
    where = tracker_dir if tracker_dir is not None else (Path(out) / "trackers" if out is not None else None)
    if where is None and log_with == "tensorboard":
        raise ObliviateError("log_with=tensorboard needs a directory: give tracker_dir=... or a run directory "
                             "(out_dir)")
    return {"log_with": log_with, **({"project_dir": str(where)} if where is not None else {})}


def _hparams(config) -> dict:
    """The config's scalar fields (str, bool, int, float), what every tracker stores as hyper-parameters."""
    return {k: v for k, v in vars(config).items() if isinstance(v, (str, bool, int, float))}


def start_trackers(acc, config, out: str | Path | None) -> None:
    """`accelerator.init_trackers` for the run, the resolved config as its hyper-parameters (nothing when the
    Accelerator has no tracker)."""
    if not acc.log_with:
        return
    kind = str(acc.log_with[0])
    name = run_name(out, nested=kind == "tensorboard" and config.tracker_dir is None)
    where = acc.logging_dir if acc.project_configuration.project_dir is not None else None
    init = {"wandb": {"name": name, **({"dir": str(where)} if where else {})}, "trackio": {"name": name},
            "mlflow": {"run_name": name}}
    if where is not None and acc.is_main_process:  # only the main process writes (and its run dir is claimed)
        Path(where).mkdir(parents=True, exist_ok=True)
    acc.init_trackers(name if kind == "tensorboard" else PROJECT, config=_hparams(config),
                      init_kwargs={kind: init[kind]} if kind in init else None)


def log_values(acc, values: dict, *, step: int, prefix: str) -> None:
    """`accelerator.log` of the numeric `values` as `<prefix>/<key>` at `step` (None = not computed: left out)."""
    if not acc.trackers:
        return
    scalars = {f"{prefix}/{k}": float(v) for k, v in values.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if scalars:
        acc.log(scalars, step=step)


def log_step(acc, row: dict | None, point: dict | None) -> None:
    """A training step's log row as `train/*` at its step, and an evaluation point's probe metrics (a trajectory
    record, `unlearn.trajectory`) as `probe/*` at the point's step."""
    if row is not None:
        log_values(acc, {k: v for k, v in row.items() if k != "step"}, step=row["step"], prefix="train")
    if point is not None:
        log_values(acc, point["metrics"], step=point["step"], prefix="probe")


def stop_trackers(acc) -> None:
    """Close the run's trackers (flush TensorBoard's files, end the wandb / mlflow run). Not
    `accelerator.end_training()`: that also destroys the process group, which later runs of the same process
    (a pipeline, continual unlearning) still use."""
    for tracker in acc.trackers:
        tracker.finish()
    acc.trackers.clear()
