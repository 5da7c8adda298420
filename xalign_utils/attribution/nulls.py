"""Null attributions that carry no information about the model: the reference every
metric is compared against."""

from __future__ import annotations

import zlib

import numpy as np

from ..forward import Batch


def random_scores(model, batch: Batch, seed: int = 0, **_) -> tuple[list, dict]:
    """Seeded uniform scores per word, stable across processes (seeded by example id)."""
    out = []
    for ex, rp in zip(batch.examples, batch.rendered, strict=True):
        rng = np.random.default_rng([seed, zlib.crc32(ex.id.encode())])  # stable across processes
        s = rng.random(len(rp.word_tokens))
        out.append((s, s.copy()))
    return out, {}
