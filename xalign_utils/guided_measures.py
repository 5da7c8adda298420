"""Notebook 06's measures of steered explanations, and their tests against the reference
decoding (see :mod:`xalign_utils.guided_runs` for the conditions).

The primary metrics answer two questions: is the explanation more faithful (``comp_gain``:
erasure comprehensiveness of the words it names minus that of as many random words)? Is it
more consistent with an attribution method it was not steered by (``rank_auc_eval``)?
Both are Holm-corrected together; plausibility, fluency, parse rate, length and the stated
answer's accuracy are effect sizes with CIs.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from .baselines import WORD_LIST_ROLES
from .config import RunConfig
from .consistency import rank_auc
from .decoding.generation import continuation_logprobs
from .explanations import parse_outputs
from .faithfulness import erase, label_probabilities
from .guided_runs import GREEDY, STAGE, top_words
from .prompts import render
from .schema import Example
from .stats import paired_tests, token_f1
from .store import cached
from .validation import EXPLANATIONS

#: The primary metric of each question, Holm over both; the rest are effect sizes.
PRIMARIES = ("comp_gain", "rank_auc_eval")
SECONDARY = ("rank_auc_steer", "f1_human", "log_ppl", "parsed", "answer_correct", "n_tokens")
#: The reference of each condition in the paired tests (constrained beam search against
#: unconstrained beam search of the same width, so the test isolates the constraints);
#: every other condition against greedy.
REFERENCE = {"constrained": "beam"}


def failed(table: pd.DataFrame, column: str) -> pd.Series:
    """A failure flag of :func:`~xalign_utils.explanations.parse_outputs` as bools, missing
    (the column, or a row of another role) counted as failed. The flags arrive as objects
    when roles mix (``None`` beside bools), and ``~`` on an object column is Python's
    integer ``~`` (``~True == -2``), not a logical not."""
    if column not in table:
        return pd.Series(True, index=table.index)
    return table[column].astype("boolean").fillna(True).astype(bool)


def explanation_key(frame: pd.DataFrame) -> pd.Series:
    """``<explanation type> | <condition>``: one name per role × condition."""
    return frame["role"].map(EXPLANATIONS) + " | " + frame["condition"]


def evaluate_guided(
    model,
    tokenizer,
    cfg: RunConfig,
    guided: pd.DataFrame,
    examples: Sequence[Example],
    attributions: pd.DataFrame,
    methods: tuple[str, str],
) -> pd.DataFrame:
    """Every output's measures (one row per example × role × condition).

    Columns: the parsed output (:func:`xalign_utils.explanations.parse_outputs`), then
    ``type``, ``n_named``, ``parsed`` (a list that parses; free text with an explanation
    and a stated answer), ``rank_auc_eval`` / ``rank_auc_steer`` (consistency with the
    evaluation / steering method, whose attributions explain the predicted label: NaN
    for free text stating another label, and for outputs naming no input word),
    ``f1_human`` (token F1 with the human rationale), ``n_tokens`` and ``log_ppl`` (mean
    negative log-probability of the generated tokens and end token under the unsteered
    model), ``answer_correct`` (explain-then-predict only, where the answer follows the
    explanation; no answer counts as wrong), ``comp`` / ``comp_random`` and the primary
    ``comp_gain`` (see :func:`comprehensiveness`).
    """
    steer, evaluate = methods
    by_id = {ex.id: ex for ex in examples}
    table = parse_outputs(guided, by_id)
    table["type"] = table["role"].map(EXPLANATIONS)
    table["explanation"] = explanation_key(table)
    mags = {
        (r.id, r.method): np.asarray(r.magnitude, dtype=float)
        for r in attributions[attributions["method"].isin(methods)].itertuples()
    }
    table["n_named"] = table["positions"].map(len)
    is_list = table["role"].isin(WORD_LIST_ROLES)
    answered, has_text, listed = (
        ~failed(table, col) for col in ("answer_failure", "empty_explanation", "parse_failure")
    )
    table["parsed"] = np.where(is_list, listed, has_text & answered).astype(float)
    about_pred = is_list | (table.get("answer") == table["asked_label"])
    for col, method in (("rank_auc_eval", evaluate), ("rank_auc_steer", steer)):
        table[col] = [
            rank_auc(mags[(i, method)], list(p)) if len(p) and ok else np.nan
            for i, p, ok in zip(table["id"], table["positions"], about_pred, strict=True)
        ]
    table["f1_human"] = [
        token_f1(list(p), by_id[i].flat_rationale()) if by_id[i].rationale else np.nan
        for i, p in zip(table["id"], table["positions"], strict=True)
    ]
    gold = table["id"].map(lambda i: by_id[i].label)
    table["answer_correct"] = np.where(
        table["role"] == "explain_then_predict", (table.get("answer") == gold).astype(float), np.nan
    )
    _fluency(model, tokenizer, cfg, table, by_id)
    return comprehensiveness(model, tokenizer, cfg, table, by_id)


def comprehensiveness(model, tokenizer, cfg: RunConfig, table: pd.DataFrame, by_id) -> pd.DataFrame:
    """Add ``comp`` (p(ŷ|x) − p(ŷ|x without the named words)), ``comp_random`` (the same
    for as many random input words) and ``comp_gain`` = comp − comp_random.

    The random words are drawn per example × explanation type × size, so conditions that
    name as many words are compared with the same random words (a paired contrast with no
    extra noise). An output naming no input word erases nothing: 0 on both sides, counted
    rather than dropped (steering changes how often that happens). Each distinct erasure is
    scored once.
    """
    n_words = {i: len(ex.flat_words()) for i, ex in by_id.items()}
    named = [tuple(sorted(set(map(int, p)))) for p in table["positions"]]
    random = []
    for i, kind, pos in zip(table["id"], table["type"], named, strict=True):
        size = min(len(pos), n_words[i])
        rng = np.random.default_rng([cfg.seed, zlib.crc32(f"{i}/{kind}/{size}".encode())])
        random.append(tuple(sorted(rng.choice(n_words[i], size, replace=False).tolist())))
    wanted = {
        (i, p) for i, a, b in zip(table["id"], named, random, strict=True) for p in (a, b) if p
    }
    comp: dict[tuple[str, tuple[int, ...]], float] = {}
    for dataset in dict.fromkeys(by_id[i].dataset for i in table["id"]):
        ids = list(dict.fromkeys(i for i in table["id"] if by_id[i].dataset == dataset))
        todo = sorted((i, p) for i, p in wanted if by_id[i].dataset == dataset)
        if not todo:
            continue
        erased = [erase(by_id[i], set(p), cfg.strategy, cfg.mask_text) for i, p in todo]
        probs = label_probabilities(
            model, tokenizer, [by_id[i] for i in ids] + erased, cfg.batch_size
        )
        full = dict(zip(ids, probs[: len(ids)], strict=True))
        for (i, p), row in zip(todo, probs[len(ids) :], strict=True):
            if np.isnan(full[i]).all():  # the prompt overflowed the context: undefined
                comp[(i, p)] = np.nan
                continue
            top = int(np.nanargmax(full[i]))
            comp[(i, p)] = float(full[i][top] - row[top])
    table["comp"] = [comp.get((i, p), 0.0) for i, p in zip(table["id"], named, strict=True)]
    table["comp_random"] = [comp.get((i, p), 0.0) for i, p in zip(table["id"], random, strict=True)]
    table["comp_gain"] = table["comp"] - table["comp_random"]
    return table


def _fluency(model, tokenizer, cfg: RunConfig, table: pd.DataFrame, by_id) -> None:
    """Add ``n_tokens`` and ``log_ppl``: the generated tokens (and the end token, where
    the output ended) teacher-forced through the unsteered model."""
    prompts = [
        render(tokenizer, by_id[r.id], r.role, label=r.asked_label, k=r.k).input_ids
        for r in table.itertuples()
    ]
    end = tokenizer.eos_token_id
    conts = [
        list(map(int, t)) + ([] if hit else [end])
        for t, hit in zip(table["tokens"], table["hit_limit"], strict=True)
    ]
    logps = continuation_logprobs(
        model,
        tokenizer,
        prompts,
        conts,
        batch_size=cfg.gen_batch_size,
        groups=list(zip(table["id"], table["role"], table["asked_label"], strict=True)),
    )
    table["n_tokens"] = [len(t) for t in table["tokens"]]
    table["log_ppl"] = [-float(lp.mean()) if len(lp) else np.nan for lp in logps]


def run_evaluation(cfg: RunConfig, model, tokenizer, guided, examples, attributions, methods):
    """:func:`evaluate_guided`, stored as ``guided_measures`` and reused."""
    return cached(
        cfg,
        STAGE,
        "guided_measures",
        lambda: evaluate_guided(model, tokenizer, cfg, guided, examples, attributions, methods),
        guide=True,
        code=["guided_runs", "decoding", "explanations", "faithfulness"],
    )


def _against_references(table: pd.DataFrame, by: list[str], **kwargs) -> pd.DataFrame:
    """:func:`~xalign_utils.stats.paired_tests` of every condition against its reference
    (:data:`REFERENCE`, else greedy), with a ``reference`` column."""
    parts = []
    for ref in dict.fromkeys([GREEDY, *REFERENCE.values()]):
        conds = [c for c in table["condition"].unique() if REFERENCE.get(c, GREEDY) == ref]
        sub = table[table["condition"].isin([ref, *conds])]
        if conds and ref in set(sub["condition"]):
            parts.append(
                paired_tests(sub, by, [*PRIMARIES, *SECONDARY], condition="condition",
                             reference=ref, **kwargs).assign(reference=ref)
            )  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def guided_tests(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Each condition against its reference per dataset × explanation type, paired on
    examples: the primary metrics (:data:`PRIMARIES`) Holm-corrected together over the
    whole table, the rest exploratory effect sizes."""
    out = _against_references(table, ["dataset", "type"], primary=list(PRIMARIES))
    tested = out["p"].notna() & out["role"].eq("primary")
    out["p_holm"], out["reject"] = np.nan, False
    if tested.any():
        reject, p_holm, _, _ = multipletests(out.loc[tested, "p"], alpha, method="holm")
        out.loc[tested, "p_holm"], out.loc[tested, "reject"] = p_holm, reject
    m = max(int(tested.sum()), 1)
    out["alpha_m"] = np.where(out["role"].eq("primary"), alpha / m, alpha)
    out["can_reject"] = out["min_p"] <= out["alpha_m"]
    return out


def pooled_effects(table: pd.DataFrame) -> pd.DataFrame:
    """Each condition against its reference per dataset, explanation types pooled (pairs
    are example × role, clustered by example), for the trade-off figure: effect sizes with
    CIs, no tests."""
    return _against_references(table, ["dataset"], unit=["id", "role"], cluster="id", primary=False)


def example_gallery(table: pd.DataFrame, weights) -> pd.DataFrame:
    """Explain-then-predict outputs before and after steering, chosen by rule: per
    dataset, the examples whose consistency with the evaluation method rose most, least
    and by the median amount from greedy to the strongest bias (``pick``), with the
    steering method's top words and the constrained output."""
    etp = table[table["role"] == "explain_then_predict"]
    strongest = etp.loc[etp["alpha"] == etp["alpha"].max(), "condition"].iloc[0]
    wide = etp.pivot_table(
        index=["dataset", "id"], columns="condition", values="raw", aggfunc="first"
    )
    auc = etp.pivot_table(
        index=["dataset", "id"], columns="condition", values="rank_auc_eval", dropna=False
    ).reindex(columns=[GREEDY, strongest])
    gain = (auc[strongest] - auc[GREEDY]).rename("rank_auc_gain")
    rows = wide.join(gain).reset_index().dropna(subset=["rank_auc_gain"])
    picks = []
    for _, grp in rows.sort_values("rank_auc_gain", ascending=False).groupby("dataset", sort=False):
        chosen = {"largest gain": 0, "median": len(grp) // 2, "smallest gain": len(grp) - 1}
        for pick, at in chosen.items():
            picks.append(grp.iloc[[at]].assign(pick=pick))
    if not picks:
        return pd.DataFrame(columns=["dataset", "id", "pick", "top words", GREEDY, strongest])
    out = pd.concat(picks).drop_duplicates(["dataset", "id"])
    out.insert(2, "top words", out["id"].map(lambda i: ", ".join(top_words(weights[i], 5))))
    cols = ["dataset", "id", "pick", "top words", GREEDY, strongest, "constrained", "rank_auc_gain"]
    return out[[c for c in cols if c in out]].reset_index(drop=True)
