"""Speed paths of the loop keep its numbers: length-sorted probe/cache passes return input order, and the
'before' forget probe taken from the reference cache (no extra pass) equals a live probe."""

import copy
import warnings

import torch
from torch.testing import assert_close

from obliviate.data.format import pad_batch
from obliviate.models.logps import sequence_logps
from obliviate.unlearn import UnlearnConfig, unlearn
from obliviate.unlearn.batch import answer_lengths, build_data, example_logps
from obliviate.unlearn.loop import forget_probe


def test_length_sorted_example_logps_are_in_input_order(target, splits):
    model, tok = target
    data = build_data(tok, splits[0][:7], None, set())
    sums = example_logps(model, data.forget, data.pad_id, batch_size=3)
    with torch.no_grad():
        one_by_one = torch.cat([sequence_logps(model, pad_batch([ex], data.pad_id)).sum()
                                for ex in data.forget])
    assert_close(sums, one_by_one, atol=1e-4, rtol=1e-5)
    lengths = [sum(1 for t in ex["labels"][1:] if t != -100) for ex in data.forget]
    assert answer_lengths(data.forget).tolist() == lengths and min(lengths) > 0


def test_before_probe_from_the_reference_cache_equals_a_live_probe(target, splits):
    model, tok = target
    live = forget_probe(copy.deepcopy(model), build_data(tok, splits[0], None, set()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, log = unlearn(model, tok, *splits, UnlearnConfig(recipe="npo+gd", max_steps=1), progress=False)
    assert abs(log.summary["forget_prob_before"] - live["forget_prob"]) < 1e-5
    assert abs(log.summary["forget_mean_logp_before"] - live["forget_mean_logp"]) < 1e-4


def test_model_saved_in_a_thread_while_the_after_probe_runs(target, splits, tmp_path, monkeypatch):
    """The saved model is the returned one, written by the 'save' thread; a failed save is the run's error and
    leaves no summary (the run is not reported finished)."""
    import threading

    import pytest

    from obliviate.models.loading import load_model, model_fingerprint
    from obliviate.unlearn import loop

    model, tok = target
    threads, real_save = [], loop.save_model
    monkeypatch.setattr(loop, "save_model", lambda *a, **k: threads.append(threading.current_thread().name)
                        or real_save(*a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out_model, log = unlearn(model, tok, *splits, UnlearnConfig(recipe="ga+gd", max_steps=1), progress=False,
                                 out_dir=tmp_path / "run")
    assert len(threads) == 1 and threads[0].startswith("save")
    assert model_fingerprint(load_model(tmp_path / "run")[0]) == model_fingerprint(out_model)
    assert (tmp_path / "run" / "summary.json").is_file()

    def broken(*a, **k):
        raise OSError("disk gone")

    monkeypatch.setattr(loop, "save_model", broken)
    model, tok = load_model(tmp_path / "run")
    with warnings.catch_warnings(), pytest.raises(OSError, match="disk gone"):
        warnings.simplefilter("ignore")
        unlearn(model, tok, *splits, UnlearnConfig(recipe="ga+gd", max_steps=1), progress=False, out_dir=tmp_path / "r2")
    assert not (tmp_path / "r2" / "summary.json").exists()


def test_sparse_tied_embedding_gradient_is_the_dense_one(random_micro, splits):
    """Tied embeddings: the input embedding's sparse gradient, added to lm_head's, gives the dense `.grad` of the
    default path; an untied or frozen embedding is left alone; off again afterwards."""
    from obliviate.unlearn.setup import sparse_tied_embedding

    model, tok = copy.deepcopy(random_micro[0]).train(), random_micro[1]
    emb = model.get_input_embeddings()
    data = build_data(tok, splits[0][:4], None, set())
    batch = pad_batch(data.forget, data.pad_id)
    grads = []
    for on in (False, True):
        assert sparse_tied_embedding(model, on) and emb.sparse is on
        model.zero_grad(set_to_none=True)
        sequence_logps(model, batch).mean().sum().backward()
        assert not emb.weight.grad.is_sparse
        grads.append(emb.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    model.zero_grad(set_to_none=True)
    emb(batch["input_ids"]).sum().backward()  # the embedding alone: its own sparse gradient reaches .grad
    assert emb.weight.grad.is_sparse
    sparse_tied_embedding(model, False)
    emb.weight.requires_grad_(False)
    assert sparse_tied_embedding(model, True) and not emb.sparse  # frozen: nothing to gain
    model.lm_head.weight = torch.nn.Parameter(emb.weight.detach().clone())
    assert not sparse_tied_embedding(model, True) and not emb.sparse  # untied


def test_a_run_with_the_sparse_tied_embedding_gives_the_dense_runs_weights(target, splits, monkeypatch):
    from obliviate.unlearn import setup

    runs, seen = [], []
    for sparse in (True, False):
        if not sparse:
            monkeypatch.setattr(setup, "sparse_tied_embedding", lambda model, on: True)
        model = copy.deepcopy(target[0])
        hook = model.get_input_embeddings().register_forward_hook(
            lambda m, i, o: seen.append(m.sparse) if torch.is_grad_enabled() else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out, _ = unlearn(model, target[1], *splits, UnlearnConfig(recipe="ga+gd", max_steps=2), progress=False)
        hook.remove()
        assert not out.get_input_embeddings().sparse  # off again after the run
        runs.append(torch.cat([p.detach().flatten() for p in out.parameters()]))
    assert True in seen and False in seen  # the first run's training forwards were sparse, the second's not
    assert float((runs[0] - runs[1]).norm() / runs[1].norm()) < 1e-6


def test_after_probe_left_to_the_evaluation_is_recorded_from_it(target, splits, tmp_path):
    """`after_probe=False`: no final probe, the summary says the 'after' values are pending; `record_after` writes
    the given values (here the probe of the saved model, as the evaluation measures it) and their source, once."""
    import json

    import pytest

    from obliviate import ObliviateError
    from obliviate.models.loading import load_model
    from obliviate.unlearn.loop import AFTER_PENDING, record_after

    model, tok = copy.deepcopy(target[0]), target[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, log = unlearn(model, tok, *splits, UnlearnConfig(recipe="ga+gd", max_steps=2, lr=1e-3), progress=False,
                         out_dir=tmp_path / "run", after_probe=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["forget_prob_after"] is None and summary["after_from"] == AFTER_PENDING == log.summary["after_from"]
    after = forget_probe(load_model(tmp_path / "run")[0], build_data(tok, splits[0], None, set()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the probe moved: no "changed nothing" warning
        record_after(tmp_path / "run", after["forget_prob"], after["forget_mean_logp"], "eval.json")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["forget_prob_after"] == after["forget_prob"] < summary["forget_prob_before"]
    assert summary["after_from"] == "eval.json"
    with pytest.raises(ObliviateError, match="took its own 'after' probe"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, log = unlearn(copy.deepcopy(target[0]), tok, *splits, UnlearnConfig(recipe="ga+gd", max_steps=1),
                         progress=False, out_dir=tmp_path / "own")
        record_after(tmp_path / "own", 0.5, -1.0, "eval.json")
    with pytest.warns(UserWarning, match="forget log-prob moved < 1e-4"):
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        summary["after_from"] = AFTER_PENDING
        (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
        record_after(tmp_path / "run", summary["forget_prob_before"], summary["forget_mean_logp_before"], "eval.json")
