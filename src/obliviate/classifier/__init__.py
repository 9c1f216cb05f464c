"""The classifier-privacy module: DFHL-RS hard-label robustness stealing and PLG-MI model inversion.

    from obliviate.classifier import steal, invert, StealConfig, InvertConfig
    result = steal(StealConfig(dataset="digits", mode="hee"), out_dir="runs/steal")

Its own package, independent of the language-model code: it imports only `obliviate` (ObliviateError),
`obliviate.config`, `obliviate.rundir`, `obliviate.html`, `obliviate.stats` and `obliviate.models.device` (where
tensors live, shared with the language-model verbs). Inside, imports flow
data → models → oracle/robustness → steal/invert → report → commands (the `obliviate steal|invert` verbs).
Names are imported lazily so `import obliviate.classifier.data` stays light.

Device: every model, image and random draw of a run lives on one device, `models.device.resolve_device` of
`--model-args device_map=...` (default: CUDA when present, else the CPU); new tensors take the device of the
tensor or model they meet. Precision: fp32 throughout, no bf16 autocast. The networks are a few 10 k
parameters on 8x8 / 28x28 images (launch-bound, nothing for bf16 to speed up), while the attacks step on the
sign of input gradients (PGD, HEE, UE, APGD), compare near-equal logits (CW margin, max-margin) and test for
equality (hard labels, agreement): bf16 rounds activations and logits to an 8-bit mantissa, which would flip
signs and ties and change what is measured. TF32 products (fp32 storage and accumulation; PyTorch's default for
cuDNN convolutions) are allowed on CUDA (`allow_tf32`), as for the language models.
"""

_EXPORTS = {"StealConfig": "steal", "steal": "steal", "InvertConfig": "invert", "invert": "invert",
            "HardLabelOracle": "oracle", "report_section": "report"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
