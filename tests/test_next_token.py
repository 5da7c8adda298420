"""The next-token setting (Noiser paper): plain prompts, greedy-token target over the whole
vocabulary, Noiser's paper algorithm on batches, erasure metrics, and notebook 03/04's
stored-table plumbing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import text_example

from xalign_utils import config, faithfulness, next_token, next_token_runs
from xalign_utils import forward as FW
from xalign_utils.attribution import attribute
from xalign_utils.attribution import noiser as N
from xalign_utils.prompts import render_plain

PROMPTS = [
    "Vinson Massif is located in the continent of",
    "The Eiffel Tower is in the city of",
    "Toko Yasuda, the musician who plays the",
]


def knowns(texts=PROMPTS) -> list:
    return [text_example(f"knowns-{i}", t.split(), dataset="knowns") for i, t in enumerate(texts)]


def test_plain_rendering_maps_every_token_to_its_word(tokenizer):
    ex = knowns(["Genazzani speaks, to the media"])[0]
    rp = render_plain(tokenizer, ex)
    assert rp.text == "Genazzani speaks, to the media"
    assert rp.input_ids == tokenizer(rp.text, add_special_tokens=False)["input_ids"]
    covered = sorted(p for span in rp.word_tokens for p in span)
    assert covered == list(range(len(rp.input_ids)))  # every token, each once
    for word, span in zip(rp.words, rp.word_tokens, strict=True):
        assert tokenizer.decode([rp.input_ids[p] for p in span]).strip() == word


@pytest.mark.slow
def test_the_target_is_the_greedy_token_over_the_whole_vocabulary(model_and_tokenizer):
    model, tok = model_and_tokenizer
    exs = knowns()
    batch = next_token.prepare_batch(model, tok, exs)
    assert batch.kind == "next_token" and batch.n_labels == 1 and batch.prefix_len == 0
    full, inp = FW.input_embeddings(model, batch)
    value = FW.make_forward(model, batch)(inp, *FW.forward_args(batch, full))
    for b, ex in enumerate(exs):
        ids = torch.tensor([render_plain(tok, ex).input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)
        greedy = int(logp.argmax())
        assert int(batch.forms[b, 0, 0]) == greedy
        assert batch.target_labels[b] == tok.decode([greedy])
        assert float(value[b]) == pytest.approx(float(logp[greedy]), abs=1e-4)
    with pytest.raises(ValueError, match="greedy next token"):
        next_token.prepare_batch(model, tok, exs, target="gold")


@pytest.mark.slow
def test_batched_noiser_is_the_papers_algorithm(model_and_tokenizer):
    """On a next-token batch, Noiser equals the one-prompt reference (full passes) summed
    into words: same noise, same bisection, the whole-vocabulary distribution."""
    model, tok = model_and_tokenizer
    exs = knowns(PROMPTS[:2])
    run = dict(noise_samples=3, bisection_steps=3, seed=5)
    scores, extra = N.noiser(model, next_token.prepare_batch(model, tok, exs), **run)
    for b, ex in enumerate(exs):
        rp = render_plain(tok, ex)
        ref = N.noiser_next_token(model, rp.input_ids, **run)
        assert extra["noiser_sigma"][b] == pytest.approx(ref.sigma)
        words = [ref.scores[span].sum() for span in rp.word_tokens]
        np.testing.assert_allclose(scores[b][0], words, atol=2e-5)
    # a prompt some of whose tokens lose the greedy token below the top σ (bisected):
    # the batched default (bisect only those) equals every token bisected, and the reference
    short = knowns(["Toko Yasuda, the"])
    run = dict(noise_samples=2, bisection_steps=4, seed=0)
    batch = next_token.prepare_batch(model, tok, short)
    fast, slow = (N.noiser(model, batch, strategy=s, **run) for s in ("min", "per_token"))
    ref = N.noiser_next_token(model, render_plain(tok, short[0]).input_ids, **run)
    assert fast[1]["noiser_sigma"][0] == slow[1]["noiser_sigma"][0] == pytest.approx(ref.sigma)
    assert 0 < ref.sigma < 1 - 2**-4 and fast[1]["noiser_nonmonotone"][0] == 0
    np.testing.assert_allclose(fast[0][0][0], slow[0][0][0], atol=1e-6)


@pytest.mark.slow
def test_erasure_reads_the_greedy_token(model_and_tokenizer):
    model, tok = model_and_tokenizer
    exs = knowns()
    dist = next_token.answer_distribution(
        model,
        tok,
        [*exs, replace(exs[0], words={"text": []}, segments={"text": ""})],
        next_token.greedy_tokens(model, tok, exs) + [0],
    )
    assert (dist[:3].argmax(1) == 0).all()  # the greedy token leads on the full prompt
    assert np.isfinite(dist).all() and (dist <= 1).all()  # the empty prompt is scored too
    table = attribute(model, tok, exs, ["random", "occlusion"], seed=1)
    assert set(table["target_label"]) == set(
        tok.decode([t]) for t in next_token.greedy_tokens(model, tok, exs)
    )
    hard = faithfulness.erasure_table(
        model, tok, table, {ex.id: ex for ex in exs}, k_by_id=dict.fromkeys([e.id for e in exs], 1)
    )
    assert hard["pred"].isin(table["target_label"]).all()
    assert hard["flip_mask_all"].notna().all() and hard["comp_aopc"].notna().all()
    soft = faithfulness.soft_erasure(model, tok, table, {ex.id: ex for ex in exs})
    assert soft["soft_norm_comp"].between(0, 1).all()


def test_sizes_and_names_are_checked(tmp_path, monkeypatch):
    cfg = config.from_parameters({"PROFILE": "smoke"})
    assert next_token_runs.table_name(cfg) == "next_token_knowns1_longra1_ig4"
    with pytest.raises(ValueError, match="same length"):
        next_token_runs.table_name(replace(cfg, n_next_token=(1,)))
    with pytest.raises(ValueError, match="not next-token datasets"):
        next_token_runs.table_name(replace(cfg, next_token_datasets=("sst2", "knowns")))
    monkeypatch.setattr(next_token_runs, "load_processed", lambda *_: [])
    with pytest.raises(ValueError, match="N_EVAL"):
        next_token_runs.prompts(cfg)


def faith_table(noiser_scale: float, n: int = 30, seed: int = 0) -> pd.DataFrame:
    """Per-prompt soft scores: random at 0.2, LIME at 0.3, Noiser at ``noiser_scale``, the
    word-rarity null at 0.25, with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for method, level in (("random", 0.2), ("lime", 0.3), ("noiser", noiser_scale),
                              ("word_rarity", 0.25)):  # fmt: skip
            rows.append({"id": f"k{i}", "dataset": "knowns", "method": method,
                         "soft_norm_suff": level * rng.uniform(0.8, 1.2),
                         "soft_norm_comp": level * rng.uniform(0.8, 1.2),
                         "comp_aopc": level, "greedy_is_gold": i % 2 == 0})  # fmt: skip
    return pd.DataFrame(rows)


def test_log_ratios_report_both_soft_metrics_and_their_joint_mean():
    ratios = next_token_runs.log_ratios(faith_table(0.6))
    one = ratios[(ratios["prompts"] == "all") & (ratios["method"] == "noiser")].set_index("metric")
    assert one.loc["soft_ns_nc", "log_ratio"] == pytest.approx(np.log(3), abs=0.1)
    assert (
        one.loc["soft_ns_nc", "ci_low"]
        < one.loc["soft_ns_nc", "log_ratio"]
        < one.loc["soft_ns_nc", "ci_high"]
    )
    assert {"soft_norm_suff", "soft_norm_comp", "comp_aopc"} <= set(one.index)
    assert set(ratios["prompts"]) == {"all", "greedy = gold"}
    assert "random" not in set(ratios["method"])
    zero = faith_table(0.6).assign(
        soft_norm_suff=lambda d: d["soft_norm_suff"].where(d["method"] != "lime", 0.0)
    )
    lime = next_token_runs.log_ratios(zero).query("method == 'lime' and metric == 'soft_ns_nc'")
    assert lime["log_ratio"].isna().all()  # a mean of 0: undefined, kept and counted


def test_noiser_against_the_best_other_method_and_null_is_paired():
    clear = next_token_runs.noiser_vs_best(faith_table(0.6)).set_index("prompts")
    assert clear.loc["all", "verdict"] == "yes" and clear.loc["all", "best_method"] == "lime"
    assert clear.loc["all", "best_null"] == "word_rarity"
    assert clear.loc["all", "diff_vs_method"] == pytest.approx(np.log(2), abs=0.1)
    assert clear.loc["greedy = gold", "n"] == 15
    worse = next_token_runs.noiser_vs_best(faith_table(0.1)).set_index("prompts")
    assert worse.loc["all", "verdict"] == "no"
    tie = next_token_runs.noiser_vs_best(faith_table(0.6, n=4)).set_index("prompts")
    assert tie.loc["all", "verdict"] == "undetermined"
    absent = next_token_runs.noiser_vs_best(faith_table(0.3).query("method != 'noiser'"))
    assert set(absent["verdict"]) == {"not run"}


def test_a_default_leading_token_is_kept_and_never_attributed(tokenizer):
    class WithBos:  # a tokenizer that adds a BOS by default, as Llama's does
        def __call__(self, text, add_special_tokens=True, **kw):
            enc = dict(tokenizer(text, add_special_tokens=False, **kw))
            if add_special_tokens:
                enc["input_ids"] = [1, *enc["input_ids"]]
            return enc

    ex = knowns(["Vinson Massif is in"])[0]
    plain = render_plain(tokenizer, ex)
    bos = render_plain(WithBos(), ex)
    assert bos.input_ids == [1, *plain.input_ids]
    assert bos.word_tokens == [[p + 1 for p in span] for span in plain.word_tokens]
