"""The classifier-privacy module: DFHL-RS hard-label robustness stealing and PLG-MI model inversion.

    from obliviate.classifier import steal, invert, StealConfig, InvertConfig
    result = steal(StealConfig(dataset="digits", mode="hee"), out_dir="runs/steal")

Its own package, independent of the language-model code: it imports only `obliviate` (ObliviateError),
`obliviate.config`, `obliviate.rundir`, `obliviate.html` and `obliviate.stats`. Inside, imports flow
data → models → oracle/robustness → steal/invert → report → commands (the `obliviate steal|invert` verbs).
Names are imported lazily so `import obliviate.classifier.data` stays light.
"""

_EXPORTS = {"StealConfig": "steal", "steal": "steal", "InvertConfig": "invert", "invert": "invert",
            "HardLabelOracle": "oracle", "report_section": "report"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
