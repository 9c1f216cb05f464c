"""obliviate config ls | cp NAME [DEST]: the example configs shipped inside the package (torchtune's `tune cp`).

    obliviate config ls                           # every shipped YAML, with its first comment line
    obliviate config cp unlearn_npo_gd_sam        # -> ./unlearn_npo_gd_sam.yaml (never overwrites)
    obliviate config cp accelerate/fsdp my.yaml   # -> ./my.yaml

NAME is a path under the package's `configs/` (with or without `.yaml`), as `ls` prints it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from obliviate import ObliviateError
from obliviate.rundir import DiskFull, disk_full_errors


def add_arguments(p):
    p.add_argument("action", choices=["ls", "cp"], help="ls: list the shipped configs; cp: copy one out")
    p.add_argument("name", nargs="?", help="config to copy, as `ls` prints it (e.g. unlearn_npo_gd_sam)")
    p.add_argument("dest", nargs="?", help="destination file or directory (default: ./NAME.yaml)")


def shipped_configs() -> dict[str, Path]:
    """{name: file} for every YAML under the package's configs/ folder, sorted, names without `.yaml`."""
    root = Path(str(resources.files("obliviate") / "configs"))
    return {str(f.relative_to(root).with_suffix("")): f for f in sorted(root.rglob("*.yaml"))}


def _summary(f: Path) -> str:
    """The first comment line that is not the command line that runs it."""
    for line in f.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#"):
            break
        if text and not text.startswith(("obliviate ", "accelerate ")):
            return text
    return ""


def copy_config(name: str, dest: str | None) -> Path:
    configs = shipped_configs()
    key = name[:-5] if name.endswith(".yaml") else name
    if key not in configs:
        raise ObliviateError(f"no shipped config {name!r}; `obliviate config ls` lists: {', '.join(configs)}")
    target = Path(dest) if dest else Path(Path(key).name + ".yaml")
    if target.is_dir():
        target = target / (Path(key).name + ".yaml")
    if not target.parent.is_dir():
        raise ObliviateError(f"{target.parent}: no such directory")
    data = configs[key].read_bytes()
    try:
        with disk_full_errors(target), open(target, "xb") as f:  # exclusive create: never overwrites, even in a race
            f.write(data)
    except FileExistsError:
        raise ObliviateError(f"{target}: already exists; refusing to overwrite (choose another DEST)") from None
    except DiskFull:
        target.unlink(missing_ok=True)  # ours (created exclusively above): no half-written copy is left
        raise
    except OSError as e:
        raise ObliviateError(f"{target}: cannot write it ({e.strerror or e})") from None
    return target


def run(args):
    if args.action == "ls":
        if args.name:
            raise ObliviateError("`config ls` takes no NAME")
        for key, f in shipped_configs().items():
            print(f"{key:<32} {_summary(f)}")
        return {"configs": {key: str(f) for key, f in shipped_configs().items()}}
    if not args.name:
        raise ObliviateError("`config cp` needs a NAME (see `obliviate config ls`)")
    target = copy_config(args.name, args.dest)
    print(f"copied {args.name} to {target}")
    return {"outputs": {"config": str(target)}}
