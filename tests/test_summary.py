"""The README's generated results block: rendered from the tables, stale blocks caught."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from xalign_utils import summary

ROOT = Path(__file__).resolve().parents[1]


def _tables(tmp_path: Path) -> Path:
    """Minimal copies of every table the summary reads."""
    d = tmp_path / "tables"
    d.mkdir()
    perf = pd.DataFrame(
        [
            [
                "esnli",
                "40.0 [30.0, 50.0]",
                "33.0 [25.0, 41.0]",
                "38.0 [29.0, 47.0]",
                "16.7 [0, 1]",
                200,
            ]
        ],
        columns=pd.MultiIndex.from_tuples(
            [
                ("dataset", ""),
                ("accuracy", "model"),
                ("accuracy", "zero-rate"),
                ("macro_f1", "model"),
                ("macro_f1", "zero-rate"),
                ("n", ""),
            ]
        ),
    )
    perf.to_csv(d / "02_task_performance.csv", index=False)
    pd.DataFrame(
        {
            "dataset": ["esnli", "esnli"],
            "prompt": ["classify", "minimal"],
            "rule": ["sequence", "sequence"],
            "top_label": ["neutral", "entailment"],
            "top_share": [0.9, 0.55],
        }
    ).to_csv(d / "02_scoring_label_shares.csv", index=False)
    pd.DataFrame(
        {
            "dataset": ["esnli"] * 2,
            "prompt": ["classify", "minimal"],
            "rule": ["sequence"] * 2,
            "metric": ["accuracy"] * 2,
            "system": ["model"] * 2,
            "value": [0.4, 0.5],
            "ci_low": [0.3, 0.42],
            "ci_high": [0.5, 0.58],
            "n": [200, 200],
            "n_undefined": [0, 0],
        }
    ).to_csv(d / "02_scoring_sensitivity.csv", index=False)
    pd.DataFrame({"system": ["Top-Var"], "esnli": ["16.4 [12.6, 20.3]"]}).to_csv(
        d / "02_human_alignment.csv", index=False
    )
    pd.DataFrame(
        {
            "dataset": ["esnli", "sst2"],
            "method": ["integrated_gradients"] * 2,
            "n": [6, 2],
            "ok": [6, 2],
            "context_overflow": [0, 1],
            "nonfinite_rows": [0, 0],
            "words_without_tokens": [0, 0],
            "truncated_words": [0, 0],
            "seconds_per_example": [20.0, 24.0],
            "ig_delta_abs": [0.1, 0.1],
            "ig_relative_error": [0.01, 0.06],
            "noiser_sigma": [None, None],
        }
    ).to_csv(d / "03_attribution_health.csv", index=False)
    test = {
        "metric": ["m", "m"],
        "method": ["saliency", "random_like"],
        "n": [30, 12],
        "mean_diff": [0.123, -0.01],
        "diff_ci_low": [0.05, -0.1],
        "diff_ci_high": [0.2, 0.08],
        "role": ["primary"] * 2,
        "reject": [True, False],
        "can_reject": [True, False],
    }
    pd.DataFrame({"explanation": ["Top-Var list"] * 2, **test}).to_csv(
        d / "04_consistency_primary.csv", index=False
    )
    for name in ("04_faithfulness_primary", "04_plausibility_primary"):
        pd.DataFrame(test).to_csv(d / f"{name}.csv", index=False)
    pd.DataFrame(
        {
            "explanation": ["Top-Var list"],
            "metric": ["rank_auc"],
            "method": ["saliency"],
            "best_null": ["word_rarity"],
            "value": [0.07],
            "ci_low": [0.01],
            "ci_high": [0.13],
            "n": [30],
        }
    ).to_csv(d / "04_consistency_vs_best_null.csv", index=False)
    pd.DataFrame(
        {
            "dataset": ["esnli"],
            "selection": ["Prompting"],
            "metric": ["flipped"],
            "value": [0.25],
            "ci_low": [0.1],
            "ci_high": [0.4],
            "n": [20],
            "n_undefined": [1],
        }
    ).to_csv(d / "04_table4_flip_rates.csv", index=False)
    pd.DataFrame({"metric": ["rank_auc"], "random_at_chance": [True], "passed": ["1/1"]}).to_csv(
        d / "04_validation_verdict.csv", index=False
    )
    point = {"run": "plain-s13", "dataset": "esnli", "n": 30, "zero_rate": 0.4}
    pd.DataFrame(
        [
            point | {"step": 0, "correct": 0.3, "correct_lo": 0.2, "correct_hi": 0.4},
            point | {"step": 75, "correct": 0.6, "correct_lo": 0.5, "correct_hi": 0.7},
        ]
    ).assign(top_label_share=[0.9, 0.5]).to_csv(d / "05_checkpoints.csv", index=False)
    pd.DataFrame(
        [
            {"run": "plain-s13", "dataset": "esnli", "step": 75, "n": 200, "accuracy": 0.6,
             "lo": 0.5, "hi": 0.7, "untrained": 0.3, "untrained_lo": 0.2, "untrained_hi": 0.4,
             "gain": 0.3, "gain_lo": 0.2, "gain_hi": 0.4, "zero_rate": 0.4,
             "top_label_share": 0.5, "target": 0.55, "meets_target": True,
             "ci_above_zero_rate": True, "label_share_ok": True},
        ]
    ).to_csv(d / "05_targets.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {
            "dataset": ["esnli"],
            "metric": ["align_ixg"],
            "r": [0.5],
            "lo": [-0.2],
            "hi": [0.9],
            "checkpoints": [3],
            "n_defined": [30],
            "model": ["Llama-3-8B Instruct"],
            "paper_r": [0.88],
            "paper_p": [0.001],
        }
    ).to_csv(d / "05_fayyaz_tables3_5.csv", index=False)
    pd.DataFrame(
        {
            "dataset": ["esnli", "esnli"],
            "metric": ["comp_aopc", "comp_aopc"],
            "question": ["faithfulness", "faithfulness"],
            "condition": ["λ=0.1", "λ=1"],
            "role": ["primary", "primary"],
            "n": [20, 20],
            "mean_diff": [0.01, 0.04],
            "diff_ci_low": [-0.02, 0.01],
            "diff_ci_high": [0.03, 0.07],
            "reject": [False, True],
            "can_reject": [True, True],
        }
    ).to_csv(d / "05_regularised_tests.csv", index=False)
    pd.DataFrame({"role": ["rationale_topk"], "n": [20], "identical": [19]}).to_csv(
        d / "06_reproduces_02.csv", index=False
    )
    pd.DataFrame(
        {
            "dataset": ["esnli", "esnli", "esnli"], "type": ["Top-Var list", "free text", "Top-Var list"],
            "condition": ["bias α=4"] * 3, "reference": ["greedy"] * 3,
            "metric": ["comp_gain", "comp_gain", "rank_auc_eval"], "role": ["primary"] * 3,
            "n": [20, 20, 20], "mean_diff": [0.05] * 3, "diff_ci_low": [0.01] * 3,
            "diff_ci_high": [0.09] * 3, "reject": [True, False, False], "can_reject": [True] * 3,
            "p": [0.01, 0.5, 0.4],
        }
    ).to_csv(d / "06_guided_tests.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {
            "dataset": ["esnli", "esnli"], "condition": ["bias α=4", "extractive"],
            "metric": ["log_ppl", "log_ppl"], "mean_diff": [0.3, 1.2],
            "diff_ci_low": [0.1, 0.9], "diff_ci_high": [0.5, 1.5],
        }
    ).to_csv(d / "06_guided_effects.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {
            "model": ["base", "fine-tuned"], "dataset": ["esnli", "esnli"],
            "measure": ["accuracy", "accuracy"], "value": [0.28, 0.37], "ci_low": [0.21, 0.2],
            "ci_high": [0.34, 0.53], "n": [200, 30], "table": ["02_task_performance", "05_checkpoints"],
        }
    ).to_csv(d / "07_main_results.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"finding": ["fine-tuning raises Input×Grad's flip rate"], "table": ["4_flip_rate_pct"],
         "paper": ["3 of 3 models"], "here": ["yes"], "reproduces": [True]}
    ).to_csv(d / "07_fayyaz_directions.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"dataset": ["knowns", "knowns"], "method": ["LIME", "Noiser"],
         "paper_log_ratio": [0.44, 1.81], "ours_log_ratio": [0.10, 0.30],
         "ours_ci": ["[0.00, 0.20]", "[0.20, 0.40]"], "ours_n": [50, 50]}
    ).to_csv(d / "07_noiser_table1.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"dataset": ["knowns"], "paper": ["yes"], "ours": ["yes"], "best_other": ["lime"],
         "diff_vs_best": [0.2], "diff_ci": ["[0.10, 0.30]"], "rank_spearman": [0.5], "n": [50]}
    ).to_csv(d / "07_noiser_directions.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"dataset": ["knowns", "knowns"], "method": ["integrated_gradients", "lime"],
         "ig_relative_error": [1.88, None]}
    ).to_csv(d / "03_next_token_health.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"language": ["de"], "accuracy": [0.4], "accuracy_ci_low": [0.3],
         "accuracy_ci_high": [0.5], "n": [48], "p_above_chance_holm": [0.21],
         "top_predicted": ["neutral"], "top_predicted_share": [0.9], "rank_auc": [0.6],
         "rank_auc_ci_low": [0.5], "rank_auc_ci_high": [0.7], "rank_auc_best_null": [0.55],
         "rank_auc_best_null_ci_low": [0.5], "rank_auc_best_null_ci_high": [0.6],
         "diff_vs_null": [0.05], "diff_vs_null_ci_low": [-0.01], "diff_vs_null_ci_high": [0.1]}
    ).to_csv(d / "07_multilingual.csv", index=False)  # fmt: skip
    return d


def test_block_carries_values_cis_n_and_tables(tmp_path):
    text = summary.results_markdown(_tables(tmp_path))
    assert "| e-SNLI | 200 | 40.0 [30.0, 50.0] | 33.0 [25.0, 41.0] |" in text
    assert "`neutral` 90%" in text  # the classify/sequence share, not the minimal prompt's
    assert "50.0 [42.0, 58.0] | minimal / sequence" in text  # best over prompts × rules
    assert "+0.12 [0.05, 0.20] n=30 **✓**" in text and "n=12 **✓**" not in text
    assert "1 of 2 can reject" in text
    assert "+0.07 [0.01, 0.13] (word_rarity)" in text
    assert "0.25 [0.10, 0.40] n=20" in text
    assert "| integrated_gradients | 8 | 8 | 1 | 0 | 21 | 1.0–6.0% |" in text  # n-weighted cost
    assert "above the 5% limit on sst2 (6.0%)" in text
    assert (
        "| e-SNLI | 200 | 0.30 [0.20, 0.40] | 0.60 [0.50, 0.70] | +0.30 [0.20, 0.40] | 0.40 "
        "| 0.55 | 50% | yes |" in text
    )
    assert (
        "| e-SNLI | align_ixg | Llama-3-8B Instruct | 0.88 (0.001) | +0.50 [-0.20, 0.90] | 3 | 30 |"
        in text
    )
    assert "+0.04 [0.01, 0.07] n=20 **✓**" in text and "+0.01 [-0.02, 0.03] n=20 |" in text
    assert "reproduced notebook 02 for 19 of 20 outputs" in text
    assert "| e-SNLI: accuracy | 0.28 [0.21, 0.34] n=200 | 0.37 [0.20, 0.53] n=30 |" in text
    assert "| fine-tuning raises Input×Grad's flip rate | 3 of 3 models | yes | True |" in text
    assert "| Top-Var list, bias α=4 − greedy | +0.05 [0.01, 0.09] n=20 **✓** |" in text
    assert "over 3 tests (0 comparisons had no pairs, and 1 are not in the table" in text
    assert "| e-SNLI: log-perplexity | +0.30 [0.10, 0.50] | +1.20 [0.90, 1.50] |" in text
    assert "| Noiser | +1.81 | +0.30 [0.20, 0.40] |" in text and "knowns n=50" in text
    assert "| knowns | yes | yes | lime | 0.2 | [0.10, 0.30] | 0.5 |" in text
    assert "completeness error on these prompts is knowns 188%" in text
    assert "| de | 0.40 [0.30, 0.50] | 48 | 0.21 | neutral (0.90) |" in text
    assert "+0.05 [-0.01, 0.10] |" in text  # the paired difference from the best null
    for name in ("02_task_performance", "04_consistency_primary", "05_regularised_tests"):
        assert f"`{name}`" in text


def test_missing_table_names_the_notebook(tmp_path):
    tables = _tables(tmp_path)
    (tables / "04_table4_flip_rates.csv").unlink()
    with pytest.raises(summary.MissingTableError, match=r"notebook 04 \(`make 04`\)"):
        summary.results_markdown(tables)


def test_render_replaces_only_the_block(tmp_path):
    tables = _tables(tmp_path)
    (h_start, h_end), (start, end) = summary.markers("headline"), summary.markers("results")
    text = f"before\n{h_start}\nOLD\n{h_end}\nmiddle\n{start}\nOLD numbers\n{end}\nafter\n"
    new = summary.render_readme(text, tables)
    assert new.startswith(f"before\n{h_start}\nMain results") and new.endswith(f"{end}\nafter\n")
    assert f"{h_end}\nmiddle\n{start}\n" in new
    assert "OLD" not in new and summary.render_readme(new, tables) == new
    assert "Fine-tuned accuracy" in new.split(start)[1]  # the details go in the second block
    with pytest.raises(ValueError, match="no generated 'headline' block"):
        summary.render_readme("no markers", tables)


def test_check_fails_on_a_stale_readme(tmp_path):
    tables = _tables(tmp_path)
    readme = tmp_path / "README.md"
    blocks = [summary.markers(b) for b in summary.BLOCKS]
    readme.write_text("".join(f"{start}\nold\n{end}\n" for start, end in blocks))
    args = ["--readme", str(readme), "--tables", str(tables)]
    assert summary.main([*args, "--check"]) == 1
    assert summary.main(args) == 0 and summary.main([*args, "--check"]) == 0


def test_committed_readme_matches_committed_tables():
    """`make readme` was run after the tables in figures/tables/ were last regenerated."""
    assert (
        summary.main(
            [
                "--check",
                "--readme",
                str(ROOT / "README.md"),
                "--tables",
                str(ROOT / "figures/tables"),
            ]
        )
        == 0
    )


def test_ig_caveat_needs_ig_rows_and_says_when_ig_converged(tmp_path):
    from xalign_utils.summary_results import _ig_caveat

    assert _ig_caveat(tmp_path) == ""  # no next-token health table
    health = pd.DataFrame({"dataset": ["knowns"], "method": ["lime"], "n": [5]})
    health.to_csv(tmp_path / "03_next_token_health.csv", index=False)
    assert _ig_caveat(tmp_path) == ""  # IG did not run on the prompts
    health.assign(method="integrated_gradients", ig_relative_error=0.02).to_csv(
        tmp_path / "03_next_token_health.csv", index=False
    )
    assert "knowns 2%" in _ig_caveat(tmp_path) and "far from" not in _ig_caveat(tmp_path)
