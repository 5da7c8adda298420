"""Which attribution rows carry scores a metric may use.

``status`` says whether a method ran on an example (``ok``, ``context_overflow``). A
Noiser row can run and still have no scores: when no σ > 0 tried keeps the prediction
(``noiser_no_sigma``) or the clean input does not (``noiser_clean_ok`` false), every
score is 0. Ranking such a row's words would rank them by position (ties) and soft
erasure would score it 0, so metrics leave these rows out and :func:`flagged` counts them.

Kept apart from the method modules on purpose: the stored attribution groups are keyed
by those modules' source, and this filter changes what is read, not what is computed.
"""

from __future__ import annotations

import pandas as pd


def flagged(attributions: pd.DataFrame) -> pd.Series:
    """Per row: a Noiser search that ran but kept no scores (False for other methods)."""
    no_sigma = attributions.get("noiser_no_sigma", pd.Series(0.0, index=attributions.index))
    clean_ok = attributions.get("noiser_clean_ok", pd.Series(1.0, index=attributions.index))
    return no_sigma.fillna(0).astype(bool) | ~clean_ok.fillna(1).astype(bool)


def usable(attributions: pd.DataFrame) -> pd.DataFrame:
    """The rows metrics may use: the method ran (``status == "ok"``) and is not
    :func:`flagged`."""
    keep = attributions["status"].eq("ok") & ~flagged(attributions)
    return attributions[keep]
