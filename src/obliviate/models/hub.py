"""How a model is named and passed, as the Hugging Face ecosystem does it.

    args = parse_model_args("dtype=bfloat16,revision=main,device_map=auto")   # lm-eval's `model_args`
    local = resolve_hub_id("HuggingFaceTB/SmolLM2-135M", args.get("revision"))  # cached? reachable? in < 2 s
    folder = hub_adapter_snapshot("user/lora-repo", None, local)    # a hub PEFT adapter: its snapshot folder

`--model-args` is parsed here only (every verb that loads a language model has the same flag, added by
`add_model_arguments`). A hub id that is neither cached nor reachable fails in one line naming the id and the
cache folder looked in, instead of huggingface_hub's ~48 s of retries.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from obliviate import ObliviateError

DTYPES = ("auto", "float32", "float16", "bfloat16")
# key -> (allowed values or None for free text, help)
MODEL_ARGS = {
    "dtype": (DTYPES, "weights' dtype (default float32; bfloat16 halves memory)"),
    "revision": (None, "hub branch, tag or commit"),
    "device_map": (None, "accelerate's placement: auto, cpu, cuda, cuda:1, ... (default: this process's device)"),
    "attn_implementation": (("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"),
                            "attention kernel"),
}
PROBE_TIMEOUT_S = 1.5


def parse_model_args(text: str | dict | None) -> dict[str, str]:
    """`key=value,key=value` → dict; an unknown key or value is one line naming it and the choices."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        pairs = list(text.items())
    else:
        pairs = []
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            if "=" not in part:
                raise ObliviateError(f"--model-args: {part!r} is not key=value (keys: {', '.join(MODEL_ARGS)})")
            key, value = (s.strip() for s in part.split("=", 1))
            pairs.append((key, value))
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in MODEL_ARGS:
            raise ObliviateError(f"--model-args: unknown key {key!r} (keys: {', '.join(MODEL_ARGS)})")
        choices = MODEL_ARGS[key][0]
        if not value or (choices and value not in choices):
            raise ObliviateError(f"--model-args: {key}={value!r} is not one of {', '.join(choices or ['a value'])}")
        if key in out:
            raise ObliviateError(f"--model-args: {key} given twice")
        out[key] = value
    return out


def from_pretrained_kwargs(args: dict[str, str]) -> dict:
    """The `from_pretrained` keywords of parsed model args (dtype as a torch dtype; default float32)."""
    import torch

    dtype = args.get("dtype", "float32")
    kw = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    for key in ("revision", "device_map", "attn_implementation"):
        if key in args:
            kw[key] = args[key]
    return kw


def add_model_arguments(p) -> None:
    """The flag every verb that loads a language model shares."""
    keys = "; ".join(f"{k}: {h}" for k, (_, h) in MODEL_ARGS.items())
    p.add_argument("--model-args", default=None, metavar="K=V,...",
                   help=f"from_pretrained options, lm-eval style, e.g. dtype=bfloat16,device_map=auto ({keys})")


def hub_cache_folder(repo_id: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("TRANSFORMERS_OFFLINE", "").upper() in ("1", "ON", "YES",
                                                                                                     "TRUE")


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connection to the hub endpoint within `timeout` seconds (name lookup included, in a thread)."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                     timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def is_cached(repo_id: str, revision: str | None = None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for name in ("config.json", "adapter_config.json"):
        try:
            hit = try_to_load_from_cache(repo_id, name, revision=revision)
        except Exception:  # an id huggingface_hub rejects (bad characters): not cached
            return False
        if isinstance(hit, str):
            return True
    return False


def resolve_hub_id(repo_id: str, revision: str | None = None) -> bool:
    """True: load with `local_files_only` (cached, hub offline or unreachable); False: the hub answers.
    Neither cached nor reachable → one line naming the id and the cache folder looked in."""
    cached = is_cached(repo_id, revision)
    if hub_offline():
        if cached:
            return True
        raise ObliviateError(f"{repo_id}: not a local directory, and not in the Hugging Face cache "
                             f"({hub_cache_folder(repo_id)}) while the hub is offline (HF_HUB_OFFLINE=1); "
                             "download it once online or pass a local model directory")
    if hub_reachable():
        return False
    if cached:
        return True
    from huggingface_hub import constants

    raise ObliviateError(f"{repo_id}: not a local directory, not in the Hugging Face cache "
                         f"({hub_cache_folder(repo_id)}), and the hub ({constants.ENDPOINT}) is unreachable; "
                         "check the network or pass a local model directory")


ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "tokenizer*", "*.model",
                 "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.*"]


def hub_adapter_snapshot(repo_id: str, revision: str | None, local_only: bool) -> Path | None:
    """The local snapshot folder of a hub repo that holds a PEFT adapter (`adapter_config.json`, no
    `config.json`), downloaded first unless `local_only`; None for a full model. The caller then loads it as an
    adapter directory: its `base_model_name_or_path` (a hub id or a path) is loaded first."""
    import huggingface_hub as hh

    if local_only:
        if isinstance(hh.try_to_load_from_cache(repo_id, "config.json", revision=revision), str):
            return None
        hit = hh.try_to_load_from_cache(repo_id, "adapter_config.json", revision=revision)
        if not isinstance(hit, str):
            return None
        return Path(hh.snapshot_download(repo_id, revision=revision, local_files_only=True))
    if hh.file_exists(repo_id, "config.json", revision=revision) \
            or not hh.file_exists(repo_id, "adapter_config.json", revision=revision):
        return None
    return Path(hh.snapshot_download(repo_id, revision=revision, allow_patterns=ADAPTER_FILES))
