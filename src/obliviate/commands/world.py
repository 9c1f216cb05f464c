"""obliviate world --preset demo --seed 0 --out data/demo"""

from obliviate.data.world import WORLD_PRESETS, write_world
from obliviate.rundir import run_dir


def add_arguments(p):
    p.add_argument("--preset", choices=list(WORLD_PRESETS), default="demo", help="size of the world (default: demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="directory for the split files")
    p.add_argument("--overwrite", action="store_true", help="replace a world of another preset/seed in --out")


def run(args):
    with run_dir(args.out) as out:
        write_world(out, args.preset, args.seed, overwrite=args.overwrite)
    from obliviate.reader import read_json_object

    m = read_json_object(out / "world.json")
    summary = {"out": str(out), "preset": args.preset, "seed": args.seed, "splits": m["splits"],
               "outputs": {"world": str(out / "world.json")}}
    print(f"wrote {len(m['splits'])} splits to {out}: " + ", ".join(f"{k}={v}" for k, v in m["splits"].items()))
    return summary
