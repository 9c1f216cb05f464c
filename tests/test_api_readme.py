"""The README's Python API example runs as printed (it can never rot): on the tiny world and a micro model trained on
it (conftest's fixtures, the library calls behind the `obliviate world` / `init-model` / `finetune` lines it cites),
placed where the example reads them."""

import re
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- tests/test_api_readme.py runs this block -->"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"README.md: the marker {MARKER} must appear once"
    block = re.match(r"\s*```python\n(.*?)\n```", text[text.index(MARKER) + len(MARKER):], re.S)
    assert block, "README.md: a ```python block must follow the marker"
    return block.group(1)


def test_the_readme_example_is_notebook_length_and_uses_the_top_level_exports():
    code = readme_example()
    assert len(code.splitlines()) <= 25
    assert code.startswith("from obliviate import load_model, load_benchmark, unlearn, evaluate, attack\n")
    assert "import obliviate." not in code and "from obliviate." not in code  # no submodule imports


def test_the_readme_example_runs(world_dir, unlearn_target_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny").symlink_to(world_dir)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny-target").symlink_to(unlearn_target_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the attacks' default directories
    ns: dict = {}
    exec(compile(readme_example(), str(README), "exec"), ns)
    out = capsys.readouterr().out
    assert "unlearned npo+gd: 4 steps" in out and "Relearning attack" in out and "Membership inference" in out
    before, after = ns["before"].metrics["forget_prob"], ns["after"].metrics["forget_prob"]
    assert f"forget Prob {before:.3f} -> {after:.3f}" in out and after < before
    assert [p["step"] for p in ns["relearn"].result["curve"]] == [0, 2, 4]
    assert sorted(p.name for p in tmp_path.glob("obliviate-*")) and all(
        (p / "run.json").is_file() for p in tmp_path.glob("obliviate-relearn-*"))
