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
