"""obliviate ls: the registries (objectives, regularisers, smoothers, metrics, benchmarks) with one line each."""


def add_arguments(p):
    p.add_argument("what", nargs="?", choices=["objectives", "regularizers", "smoothers", "metrics", "benchmarks", "all"],
                   default="all")


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def run(args):
    from obliviate.data.benchmarks import BENCHMARKS
    from obliviate.evaluate import METRICS
    from obliviate.unlearn import OBJECTIVES, REGULARIZERS, SMOOTHERS

    groups = {"objectives": OBJECTIVES, "regularizers": REGULARIZERS, "smoothers": SMOOTHERS, "metrics": METRICS,
              "benchmarks": BENCHMARKS}
    for name, reg in groups.items():
        if args.what not in (name, "all"):
            continue
        print(f"{name}:")
        for key, value in reg.items():
            doc = getattr(value, "doc", None)  # unlearning parts carry their equation's first line
            print(f"  {key:<26} {doc if isinstance(doc, str) else _first_line(getattr(value, 'fn', value))}")
    if args.what == "all":
        print("recipes compose with '+': objective[+regularizer][+smoother], e.g. npo+gd+sam, me+gd, idk+ap")
