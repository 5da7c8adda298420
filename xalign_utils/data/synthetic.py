"""The synthetic planted-evidence task: the label is carried by one trigger word."""

from __future__ import annotations

import random

from ..schema import Example
from .sentiment import SENTIMENT_LABELS

SYNTHETIC_FILLER = (
    "the a this that my our their some every one table window street morning paper train "
    "chair river garden city road book phone coffee letter office door wall kitchen "
    "yesterday today later then again also just still there here near after before "
    "walked looked opened carried moved waited read wrote saw found left took"
).split()
SYNTHETIC_TRIGGERS = {
    "positive": ("wonderful", "excellent", "delightful", "superb", "fantastic"),
    "negative": ("terrible", "awful", "horrible", "dreadful", "disgusting"),
}


def make_synthetic(n: int = 200, seed: int = 0, length: int = 12) -> list[Example]:
    """Planted-evidence sentiment task: neutral filler plus one planted trigger word.

    The trigger alone decides the label, so its position is the ground-truth evidence.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = SENTIMENT_LABELS[i % 2]
        words = [rng.choice(SYNTHETIC_FILLER) for _ in range(length - 1)]
        pos = rng.randrange(length)
        words.insert(pos, rng.choice(SYNTHETIC_TRIGGERS[label]))
        mask = [int(j == pos) for j in range(length)]
        out.append(
            Example(
                id=f"synthetic-{seed}-{i}",
                dataset="synthetic",
                split="test",
                label=label,
                segments={"text": " ".join(words)},
                words={"text": words},
                rationale={"text": mask},  # type: ignore[dict-item]
                meta={"trigger_position": pos, "seed": seed},
            )
        )
    return out
