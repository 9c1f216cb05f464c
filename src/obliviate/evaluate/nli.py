"""Natural-language inference for seed A's Entailment Score, loaded once per run.

    nli = load_nli("sileod/deberta-v3-base-tasksource-nli")   # any sequence-classification NLI id/path
    labels = nli_labels(nli, premises, hypotheses)             # e.g. ["entailment", "neutral", ...]

The entailment class is found by name in `config.id2label` (a label starting with "entail").
No NLI model installs offline here: without one the suite reports the Entailment Score as not
computed, with the reason, and never substitutes another measure under its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from obliviate import ObliviateError
from obliviate.models.device import to_device

NO_NLI_REASON = "no NLI model (--nli MODEL, e.g. sileod/deberta-v3-base-tasksource-nli; none installs offline)"


@dataclass
class NLIModel:
    model: object
    tokenizer: object
    id2label: dict[int, str]
    entailment_id: int
    name: str


def load_nli(spec: str, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> NLIModel:
    """`AutoModelForSequenceClassification` + tokenizer from a hub id or local directory, eval mode, on this
    process's device (CUDA when present).

    The same rule as every model: safetensors only unless `allow_pickle` (the `--allow-pickle` flag)."""
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from obliviate.models.device import default_device
    from obliviate.models.loading import check_weights
    from obliviate.rundir import library_bars_off

    if Path(spec).is_dir():
        check_weights(Path(spec), allow_pickle=allow_pickle)
    try:
        with library_bars_off("transformers"):
            tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(
                spec, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True)
    except (OSError, ValueError) as e:
        raise ObliviateError(f"cannot load NLI model {spec}: {str(e).splitlines()[0]}") from None
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    ent = [i for i, name in id2label.items() if name.lower().startswith("entail")]
    if len(ent) != 1:
        raise ObliviateError(f"NLI model {spec}: config.id2label {id2label} has no single 'entailment' label")
    model.to(default_device()).eval()
    return NLIModel(model, tok, id2label, ent[0], str(spec))


@torch.inference_mode()
def nli_labels(nli: NLIModel, premises: Sequence[str], hypotheses: Sequence[str], *, batch_size: int = 16,
               max_length: int = 512) -> list[str]:
    """The argmax NLI label of each (premise, hypothesis) pair."""
    if len(premises) != len(hypotheses):
        raise ObliviateError("NLI: premises and hypotheses differ in number")
    out: list[str] = []
    for start in range(0, len(premises), batch_size):
        enc = nli.tokenizer(list(premises[start:start + batch_size]), list(hypotheses[start:start + batch_size]),
                            padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        if "token_type_ids" in enc and "token_type_ids" not in _forward_args(nli.model):
            enc.pop("token_type_ids")
        pred = nli.model(**to_device(dict(enc), nli.model)).logits.argmax(-1).tolist()
        out.extend(nli.id2label[i] for i in pred)
    return out


def _forward_args(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)
