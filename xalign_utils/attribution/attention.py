"""Attention methods: last-layer attention, rollout and flow (Abnar & Zuidema 2020).

The three share one forward pass with attention weights per batch (eager attention).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from ..forward import Batch
from .aggregate import gather_rows, to_words


def attentions(model, batch: Batch, shared: dict | None = None) -> tuple[torch.Tensor, ...]:
    """Attention weights of every layer (one forward, kept in ``shared`` for the other
    attention methods of the same batch)."""
    if shared is not None and "attentions" in shared:
        return shared["attentions"]
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        raise ValueError(
            "attention methods need the model loaded with for_gradients=True (eager attention)"
        )
    with torch.inference_mode():
        out = model(
            input_ids=batch.ids,
            attention_mask=batch.mask,
            position_ids=batch.positions,
            output_attentions=True,
            logits_to_keep=1,
        )
    if shared is not None:
        shared["attentions"] = out.attentions
    return out.attentions


def attention(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    """Last-layer attention from the answer position, mean over heads."""
    att = attentions(model, batch, shared)[-1].float().mean(1)  # [B, T, T]
    return gather_rows(batch, att[:, -1]), {}


def rollout_matrices(attentions: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): ``Â = 0.5·A + 0.5·I`` per layer (head
    mean), rows renormalised, multiplied from the first layer up. Returns ``[B, T, T]``."""
    eye = torch.eye(mask.shape[1], dtype=torch.float64, device=mask.device)
    joint = None
    valid = mask.double()
    for att in attentions:
        a = att.double().mean(1)
        a = 0.5 * a + 0.5 * eye * valid.unsqueeze(-1)
        a = a / a.sum(-1, keepdim=True).clamp(min=1e-12)
        joint = a if joint is None else a @ joint
    return joint


def rollout(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    """Attention rollout row of the answer position (:func:`rollout_matrices`)."""
    joint = rollout_matrices(attentions(model, batch, shared), batch.mask)
    return gather_rows(batch, joint[:, -1].float()), {}


def attention_flow(
    attentions: Sequence[torch.Tensor],
    mask_row: torch.Tensor,
    sources: Sequence[int],
    scale: float = 1e6,
) -> np.ndarray:
    """Exact attention flow (Abnar & Zuidema 2020) for one example.

    The layer graph has a node per (layer, position); an edge from position j at layer
    l to position i at layer l+1 has capacity ``Â_l[i, j]`` (residual-mixed, row
    normalised). The flow of input position s is the max-flow from the last position at
    the top layer to s at the bottom, computed with SciPy's Dinic implementation on
    integer capacities (scaled by ``scale``).

    Returns:
        Flow per position in ``sources`` (fractions of ``scale``).
    """
    valid = mask_row.bool()
    n_layers = len(attentions)
    keep = torch.nonzero(valid).squeeze(-1)
    t = len(keep)
    remap = {int(p): i for i, p in enumerate(keep.tolist())}
    rows, cols, caps = [], [], []
    eye = torch.eye(t, dtype=torch.float64)
    for layer, att in enumerate(attentions):
        a = att.double().mean(0)[keep][:, keep].cpu()
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        i, j = torch.nonzero(a > 0, as_tuple=True)
        # edge from (layer+1, i) down to (layer, j): flow goes from the output downwards
        rows.append(((layer + 1) * t + i).numpy())
        cols.append((layer * t + j).numpy())
        caps.append(np.maximum((a[i, j].numpy() * scale).astype(np.int64), 0))
    n_nodes = (n_layers + 1) * t
    graph = csr_matrix(
        (np.concatenate(caps).astype(np.int32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_nodes, n_nodes),
    )
    source = n_layers * t + (t - 1)
    return np.array(
        [maximum_flow(graph, source, remap[int(s)]).flow_value / scale for s in sources]
    )


def flow(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    """Attention flow of every input token (:func:`attention_flow`), per example."""
    atts = attentions(model, batch, shared)
    out = []
    for b in range(batch.size):
        valid = batch.in_valid[b]
        pos = batch.in_pos[b][valid].tolist()
        flows = attention_flow([a[b] for a in atts], batch.mask[b], pos)
        tok = torch.zeros(batch.in_pos.shape[1], dtype=torch.float64)
        tok[: len(pos)] = torch.tensor(flows)
        out.append(tok)
    tok = torch.stack(out).to(batch.in_valid.device)
    return to_words(batch, tok, tok), {}
