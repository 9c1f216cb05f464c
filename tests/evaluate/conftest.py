"""Evaluation fixtures: micro target / retain models on the tiny world, and one evaluation of each (session)."""

import pytest


def _train(base_dir, world_dir, split, out):
    from obliviate.data.loading import load_split
    from obliviate.models.finetune import FinetuneConfig, finetune
    from obliviate.models.loading import load_model, save_model

    model, tok = load_model(base_dir)
    finetune(model, tok, load_split(world_dir, split), FinetuneConfig(epochs=30, lr=3e-3, batch_size=16),
             progress=False)
    save_model(model, tok, out)
    return out


@pytest.fixture(scope="session")
def target_dir(base_dir, world_dir, tmp_path_factory):
    return _train(base_dir, world_dir, "full+world_facts", tmp_path_factory.mktemp("eval_models") / "target")


@pytest.fixture(scope="session")
def retain_dir(base_dir, world_dir, tmp_path_factory):
    return _train(base_dir, world_dir, "retain90+world_facts", tmp_path_factory.mktemp("eval_models") / "retain")


@pytest.fixture(scope="session")
def target(target_dir):
    from obliviate.models.loading import load_model

    return load_model(target_dir)


@pytest.fixture(scope="session")
def eval_cfg():
    from obliviate.evaluate import EvalConfig

    return EvalConfig(max_new_tokens=24, embedder=None)


@pytest.fixture(scope="session")
def retain_results(retain_dir, world_dir, eval_cfg, tmp_path_factory):
    from obliviate.evaluate import evaluate
    from obliviate.models.loading import load_model

    model, tok = load_model(retain_dir)
    return evaluate(model, tok, world_dir, eval_cfg, out=tmp_path_factory.mktemp("eval_out") / "retain",
                    progress=False)


@pytest.fixture(scope="session")
def target_out(tmp_path_factory):
    return tmp_path_factory.mktemp("eval_out") / "target"


@pytest.fixture(scope="session")
def target_results(target, world_dir, eval_cfg, retain_results, target_out):
    from obliviate.evaluate import evaluate

    model, tok = target
    return evaluate(model, tok, world_dir, eval_cfg, out=target_out, retain_results=retain_results, progress=False)


@pytest.fixture(scope="session")
def make_nli_dir(target):
    """Factory: a randomly initialised 1-layer BERT NLI classifier saved with the micro tokenizer."""

    def make(out, id2label=None):
        from transformers import BertConfig, BertForSequenceClassification

        _, tok = target
        id2label = id2label or {0: "entailment", 1: "neutral", 2: "contradiction"}
        cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=256, id2label=id2label,
                         label2id={v: k for k, v in id2label.items()}, pad_token_id=tok.pad_token_id)
        BertForSequenceClassification(cfg).save_pretrained(out)
        tok.save_pretrained(out)
        return out

    return make
