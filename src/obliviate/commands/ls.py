"""obliviate ls: the registries (objectives, regularisers, smoothers, metrics, benchmarks, attacks), one line each."""


def add_arguments(p):
    p.add_argument("what", nargs="?", default="all",
                   choices=["objectives", "regularizers", "smoothers", "metrics", "benchmarks", "attacks", "all"])


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _line(value) -> str:
    """Unlearning parts and benchmarks carry `doc`; metrics their description; attacks their help."""
    for attr in ("doc", "description", "help"):
        text = getattr(value, attr, None)
        if isinstance(text, str) and text:
            return text
    return _first_line(getattr(value, "fn", value))


def run(args):
    from obliviate.attack.registry import ATTACKS
    from obliviate.data.benchmarks import BENCHMARKS
    from obliviate.evaluate import METRICS
    from obliviate.unlearn import OBJECTIVES, REGULARIZERS, SMOOTHERS

    groups = {"objectives": OBJECTIVES, "regularizers": REGULARIZERS, "smoothers": SMOOTHERS, "metrics": METRICS,
              "benchmarks": BENCHMARKS, "attacks": ATTACKS}
    listed = {}
    for name, reg in groups.items():
        if args.what not in (name, "all"):
            continue
        listed[name] = list(reg)
        print(f"{name}:")
        for key, value in reg.items():
            print(f"  {key:<26} {_line(value)}")
    if args.what == "all":
        print("recipes compose with '+': objective[+regularizer][+smoother], e.g. npo+gd+sam, me+gd, idk+ap")
    return listed
