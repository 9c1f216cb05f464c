"""Issue 28, defect 7: the report reads only stages the pipeline marked complete (stray `seed1.partial`,
`seed0.bak` and an interrupted continual stage are skipped with a note), draws `$…$` in labels literally, and a
read-only run directory renders to `--out` or says in one line where it would write."""

import errno
import json
import tempfile
from pathlib import Path

import pytest

from obliviate import ObliviateError


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _eval(prob: float, fq) -> dict:
    items = [{"question": f"q{i}", "answer": "a", "generation": "g", "truth_ratio": 0.5 + i / 10} for i in range(3)]
    means = {"prob": prob, "rouge_l_recall": 0.5, "truth_ratio": 0.4}
    return {"splits": {r: {"items": items, "means": means} for r in ("forget", "retain")},
            "aggregates": {"forget_quality": fq, "model_utility": 0.5, "mia": {"min_k": 0.6}}}


DONE = {"key": {}, "seconds": 1.0}  # stagecache.Stages' stage.json


def _demo_run(root: Path, recipe: str = "ga+gd", model: str = "") -> Path:
    _write(root / "demo.json", {"config": {"recipes": [recipe], "preset": "tiny", "model_size": "micro",
                                           "base_model": model, "forget": "forget10", "seeds": 2},
                                "timings": {"world": {"seconds": 1.0, "reused": False}}, "versions": {},
                                "wall_seconds": 3.0, "retain_vs_itself": {"forget_quality": 1.0}})
    _write(root / "eval/target/eval.json", _eval(0.9, 1e-3))
    _write(root / "eval/retain/eval.json", _eval(0.2, None))
    _write(root / "eval/stage.json", DONE)
    for seed in (0, 1):
        _write(root / f"runs/{recipe.replace('+', '_')}/seed{seed}/eval/eval.json", _eval(0.3 + seed / 10, 0.5))
        _write(root / f"runs/{recipe.replace('+', '_')}/seed{seed}/eval/stage.json", DONE)
    return root


def test_stray_seed_entries_are_ignored_with_a_note(tmp_path):
    from obliviate.report.card import write_report
    from obliviate.report.runs import collect

    run = _demo_run(tmp_path / "demo")
    d = run / "runs/ga_gd"
    _write(d / "seed1.partial/eval/eval.json", _eval(0.99, 0.9))  # an interrupted stage
    _write(d / "seed0.bak/eval/eval.json", _eval(0.99, 0.9))  # a user's copy
    _write(d / "seed2/eval/eval.json", _eval(0.99, 0.9))  # evaluation written but the stage never marked complete
    (d / "notes.txt").write_text("mine")
    data = collect(run)
    assert [r["seed"] for r in data["recipes"]["ga+gd"]] == [0, 1]
    ignored = " ".join(data["notes"])
    for name in ("seed1.partial", "seed0.bak", "seed2", "notes.txt"):
        assert name in ignored
    write_report(run)
    results = json.loads((run / "results.json").read_text())
    assert len(results["ignored"]) == 4 and "seed1.partial" in (run / "report.md").read_text()


def _continual(tasks: int, rows: int) -> dict:
    return {"plan": [{"task": t, "n": 2, "authors": []} for t in range(1, tasks + 1)],
            "rows": [{"task": t} for t in range(rows)], "recipe": "npo+gd", "reference": "previous"}


def test_only_finished_continual_stages_are_shown(tmp_path):
    from obliviate.report.scenarios import find_continual

    run = tmp_path / "demo"
    c = run / "continual/npo_gd"
    _write(c / "seed0/continual.json", _continual(3, 4))
    _write(c / "seed0/stage.json", DONE)
    _write(c / "seed1.partial/continual.json", _continual(3, 4))  # a killed stage, its record complete
    _write(c / "seed2/continual.json", _continual(3, 2))  # two of three tasks
    (c / "seed3").mkdir()
    (c / "seed3/continual.json").write_text('{"plan": [')  # torn
    notes: list[str] = []
    found = find_continual(run, notes)
    assert [Path(f["path"]).name for f in found] == ["seed0"]
    assert len(notes) == 3 and all(n.startswith("ignored continual/npo_gd/seed") for n in notes)
    standalone = tmp_path / "alone"  # `obliviate continual --out alone`: no stage.json, finished by its rows
    _write(standalone / "continual.json", _continual(2, 3))
    assert len(find_continual(standalone)) == 1


@pytest.mark.parametrize("label", ["models/$\\frac{$x", "npo$gd$", "$x^2$ path"])
def test_plot_labels_are_not_parsed_as_mathtext(label):
    """A bad `$…$` used to raise at savefig; a good one was typeset (italic, x²) instead of shown as written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from obliviate.html import figure_png

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label=label)
    ax.set_title(label)
    ax.set_xticks([0, 1], [label, "b"])
    legend = ax.legend()
    png = figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = [ax.title, *legend.get_texts(), *ax.get_xticklabels()]
    assert all(t.get_parse_math() is False for t in drawn)


def test_a_read_only_run_dir_renders_to_out_or_says_where(tmp_path, monkeypatch):
    from obliviate.cli import main
    from obliviate.report.card import write_report

    run = _demo_run(tmp_path / "demo")
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kw):  # root ignores chmod: model the read-only mount at the syscall
        if dir is not None and Path(dir).resolve() == run.resolve():
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ObliviateError, match=r"cannot write the report there \(read-only\) \(pass --out DIR"):
        write_report(run)
    assert main(["report", str(run)]) == 2
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    out = tmp_path / "elsewhere"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert (out / "report.html").is_file() and (out / "results.json").is_file() and (out / "scatter.png").is_file()
    assert sorted(p.name for p in run.iterdir()) == before
