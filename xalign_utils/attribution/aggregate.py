"""Sub-word → word aggregation, kept apart from computing attributions (as Inseq does).

A word's *signed* score is the sum of its tokens' signed scores; its *magnitude* is the
sum of its tokens' magnitudes (for the gradient methods, L2 norms over embedding
dimensions). Perturbation methods act on whole words through :func:`word_feature_mask`,
so their word score is the feature's score.
"""

from __future__ import annotations

import numpy as np
import torch

from ..forward import Batch


def to_words(
    batch: Batch, token_signed: torch.Tensor, token_mag: torch.Tensor
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sum token scores ``[B, P]`` into word scores per example.

    Returns:
        Per example ``(signed [n_words], magnitude [n_words])`` (float64): a word's
        score is the sum over its tokens; words without a token of their own get 0.
    """
    out = []
    for b, rp in enumerate(batch.rendered):
        n = len(rp.word_tokens)
        valid = batch.in_valid[b]
        words = batch.tok_word[b][valid]
        signed = torch.zeros(n, dtype=torch.float64).index_add_(
            0, words.cpu(), token_signed[b][valid].double().cpu()
        )
        mag = torch.zeros(n, dtype=torch.float64).index_add_(
            0, words.cpu(), token_mag[b][valid].double().cpu()
        )
        out.append((signed.numpy(), mag.numpy()))
    return out


def word_feature_mask(batch: Batch, dim: int) -> torch.Tensor:
    """Captum feature mask ``[B, P, D]``: each input token carries its word's index."""
    fm = batch.tok_word.clamp(min=0)
    return fm.unsqueeze(-1).expand(-1, -1, dim).contiguous()


def gather_rows(batch: Batch, rows: torch.Tensor) -> list:
    """Scores ``[B, T]`` over positions → input-token scores ``[B, P]`` → words."""
    tok = rows.gather(1, batch.in_pos) * batch.in_valid
    return to_words(batch, tok, tok)
