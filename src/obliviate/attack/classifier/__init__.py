"""Classifier privacy attacks: DFHL-RS hard-label robustness stealing and PLG-MI model inversion.

    from obliviate.attack.classifier import steal, invert, StealConfig, InvertConfig
    result = steal(StealConfig(dataset="digits", mode="hee"), out_dir="runs/steal")

Names are imported lazily so `import obliviate.attack.classifier.data` stays light.
"""

_EXPORTS = {"StealConfig": "dfhl_rs", "steal": "dfhl_rs", "InvertConfig": "plg_mi", "invert": "plg_mi",
            "HardLabelOracle": "oracle"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
