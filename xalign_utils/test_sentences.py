"""Paired-test tables (:func:`~xalign_utils.stats.paired_tests`) in words, for the
notebooks' printed summaries: what differs from the reference after Holm, on which side,
and which groups were too small to answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def direction(tests: pd.DataFrame) -> pd.Series:
    """+1 or −1, the side each paired test's evidence lies on, 0 where that is unclear.

    The median difference gives the side when the mean agrees with it; where the median
    is 0 (most pairs tied: the signed-rank test then rests on the untied pairs, which the
    mean reflects and the median does not), the mean does; where the two point opposite
    ways, or both are 0, the side is unclear.
    """
    median = np.sign(tests["median_diff"].astype(float))
    if "mean_diff" not in tests:
        return median.fillna(0.0)
    mean = np.sign(tests["mean_diff"].astype(float))
    return median.where(median == mean, mean.where(median == 0, 0.0)).fillna(0.0)


def _span(groups: Sequence[pd.DataFrame], unit: str) -> str:
    n = pd.concat([g["n"] for g in groups])
    return f"n = {int(n.min())}–{int(n.max())} {unit}"


def tests_in_words(
    tests: pd.DataFrame, by: Sequence[str], condition: str = "method", reference: str = "random"
) -> list[str]:
    """One sentence per group where some condition differs from ``reference`` after Holm
    (its side from :func:`direction`), then one each for the groups where nothing does,
    the groups no test of which could reject at its n (``can_reject`` false: too small to
    answer, not evidence of no difference) and the groups with nothing to compare.

    "Below" is the favourable side for metrics where smaller is better (sufficiency): the
    sentence states the side, the reader the meaning. Exploratory rows (``role``) are
    effect sizes, not tests, and are left out. ``n`` counts examples for clustered tests
    (an ``n_rows`` column), pairs otherwise.
    """
    out: list[str] = []
    if "role" in tests:
        tests = tests[tests["role"] != "exploratory"]
    if tests.empty:
        return out
    if "can_reject" in tests and not tests["can_reject"].any():
        return [
            f"No test could reject at this n (smallest attainable p {tests['min_p'].min():.2g} "
            f"> α/m = {tests['alpha_m'].min():.2g}): the profile is too small to answer; "
            "this is not evidence of no difference."
        ]
    unit = "examples" if "n_rows" in tests else "pairs"
    quiet, small, empty, groups = [], [], 0, tests.groupby(list(by), sort=False)
    for key, grp in groups:
        key = key if isinstance(key, tuple) else (key,)
        hit = grp[grp["reject"].astype(bool)]
        side = direction(hit).to_numpy()
        sides = (
            (1, f"above {reference}"),
            (-1, f"below {reference}"),
            (0, f"differs from {reference}, side unclear (median and mean disagree)"),
        )
        parts = [
            f"{word}: {', '.join(map(str, hit[side == s][condition]))}"
            for s, word in sides
            if (side == s).any()
        ]
        if parts:
            out.append(f"{', '.join(map(str, key))}: {'; '.join(parts)} ({_span([grp], unit)}).")
        elif not grp["n"].gt(0).any():
            empty += 1
        elif "can_reject" in grp and not grp["can_reject"].any():
            small.append(grp)
        else:
            quiet.append(grp)
    of = f"of the {groups.ngroups} group(s) of {' × '.join(by)}"
    if quiet:
        out.append(
            f"Nothing differs from {reference} after Holm correction in {len(quiet)} {of} "
            f"({_span(quiet, unit)})."
        )
    if small:
        out.append(
            f"In {len(small)} {of} no test could reject at its n ({_span(small, unit)}): too "
            "small to answer, not evidence of no difference."
        )
    if empty:
        out.append(f"{empty} {of} had nothing to compare (n = 0).")
    return out


def tests_report(sections: Mapping[str, tuple[pd.DataFrame | None, Sequence[str]]]) -> str:
    """Each question's title and its :func:`tests_in_words` sentences (``(tests, by)`` per
    title); a question whose table is ``None`` was not run (e.g. ``CORE_ONLY``) and says so."""
    lines = []
    for title, (tests, by) in sections.items():
        words = ["not run here"] if tests is None else tests_in_words(tests, by)
        lines += [title, *(f"  • {sentence}" for sentence in words)]
    return "\n".join(lines)
