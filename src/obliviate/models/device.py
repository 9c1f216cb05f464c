"""Where tensors live: one place that picks the device, the autocast and the matmul precision.

    dev = default_device()            # accelerate's: cuda:<local rank> when CUDA is present, else cpu (or mps)
    with autocast(dev): logits = model(**batch).logits   # bf16 on CUDA, off on CPU
    batch = to_device(batch, model)   # inputs follow the model's device

Nothing else in obliviate names a device: models are placed by `load_model` (or by `device_map=` from
`--model-args`), training by `accelerate.Accelerator`, and every input tensor follows its model.
"""

from __future__ import annotations

import contextlib

import torch


def default_device() -> torch.device:
    """accelerate's device for this process (`PartialState().device`): cuda:<local rank> when CUDA is present,
    else cpu (`accelerate launch` of several CPU processes then joins them over gloo). Allows TF32 on CUDA."""
    from accelerate import PartialState

    allow_tf32()
    return PartialState(cpu=not torch.cuda.is_available()).device


def model_device(model) -> torch.device | None:
    """The device of a model's input embedding (its first parameter); None for a plain forward function (a
    smoother's wrapper: its inputs were placed by the training loop)."""
    emb = getattr(model, "get_input_embeddings", None)
    if callable(emb) and emb() is not None:
        return emb().weight.device
    params = getattr(model, "parameters", None)
    return next(params()).device if callable(params) else None


def to_device(batch, model_or_device):
    """A dict / list / tensor moved to the model's device (or a device given as such)."""
    dev = model_or_device if isinstance(model_or_device, (torch.device, str)) else model_device(model_or_device)
    if dev is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(dev)
    if isinstance(batch, dict):
        return {k: to_device(v, dev) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, dev) for v in batch)
    return batch


def autocast_kwargs(device: torch.device | str, enabled: bool | None = None) -> dict:
    """`torch.autocast` arguments: bf16 on by default on CUDA (when the GPU supports it), off on CPU.

    `enabled=True` on CPU asks for CPU bf16 autocast explicitly (slower than fp32 on most CPUs)."""
    dev = torch.device(device)
    if enabled is None:
        enabled = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    return dict(device_type=dev.type, dtype=torch.bfloat16, enabled=bool(enabled))


def default_mixed_precision() -> str | None:
    """accelerate's `mixed_precision` for obliviate's Accelerators: what `accelerate launch --mixed_precision` set
    (None: let accelerate read it), else bf16 on a CUDA GPU that supports it, else "no"."""
    import os

    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def check_launch(acc) -> None:
    """The launcher's setting is the setting used: an `accelerate launch` of N processes that accelerate did not
    join (N independent runs), or an FSDP config that became plain DDP, is one line instead of a silent change.

    accelerate 1.16 turns on FSDP only over GPUs/accelerators (`AcceleratorState`: MULTI_GPU, MULTI_XPU, ...,
    not MULTI_CPU), so the FSDP config on CPU processes is refused here; use configs/accelerate/cpu_ddp.yaml."""
    import os

    from obliviate import ObliviateError

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and acc.num_processes != world:
        raise ObliviateError(f"accelerate launch started {world} processes but accelerate joined "
                             f"{acc.num_processes} ({acc.distributed_type}): with no GPU, launch with "
                             "configs/accelerate/cpu_ddp.yaml (use_cpu: true)")
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and acc.distributed_type.value != "FSDP":
        raise ObliviateError(f"the FSDP accelerate config was launched, but accelerate set up "
                             f"{acc.distributed_type.value} (accelerate runs FSDP on GPUs only, not on CPU "
                             "processes); use configs/accelerate/cpu_ddp.yaml on CPU")


def autocast(device: torch.device | str, enabled: bool | None = None):
    """The autocast context of `autocast_kwargs` (a null context when it is off)."""
    kw = autocast_kwargs(device, enabled)
    return torch.autocast(**kw) if kw["enabled"] else contextlib.nullcontext()


def allow_tf32() -> None:
    """TF32 matmuls and convolutions on Ampere+ GPUs (a no-op on CPU): ~8x the fp32 matmul rate, 10-bit mantissa
    products accumulated in fp32, which unlearning and evaluation tolerate."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls (cuDNN convolutions allow TF32 by default)


def device_map_of(model_args: str | dict | None, *, what: str = "--model-args") -> str | None:
    """The `device_map` of `--model-args` for code that places a whole model on one device (the classifier
    module): any other key is one line, since nothing would use it."""
    from obliviate import ObliviateError
    from obliviate.models.hub import parse_model_args

    args = parse_model_args(model_args)
    other = sorted(set(args) - {"device_map"})
    if other:
        raise ObliviateError(f"{what}: {', '.join(other)} not used here (only device_map=cpu|cuda|cuda:N|auto)")
    return args.get("device_map")


def resolve_device(device_map: str | None = None) -> torch.device:
    """One device for a model that fits on one: None or "auto" → `default_device()` (CUDA when present);
    "cpu", "cuda", "cuda:1", ... → that device, refused in one line when it is not there."""
    from obliviate import ObliviateError

    if device_map in (None, "auto"):
        return default_device()
    try:
        dev = torch.device(device_map)
    except (RuntimeError, ValueError):
        raise ObliviateError(f"device_map={device_map!r} is not a device (cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ObliviateError(f"device_map={device_map}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ObliviateError(f"device_map={device_map}: only {torch.cuda.device_count()} CUDA device(s) visible")
        allow_tf32()
    return dev
