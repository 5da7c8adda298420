"""A small model whose answer provably depends on a planted word (ground-truth evidence).

The synthetic task (:func:`xalign_utils.data.make_synthetic`) plants one trigger word among
neutral filler; the trigger alone decides the label. A tiny Llama-architecture model,
sharing the offline model's tokenizer and chat template, is trained from scratch on that
task, so a faithful attribution method must rank the trigger first, while an unfaithful
one (random) does so only at chance (1 / number of words). Tests and notebook 04 use it
as the known-answer case; it trains in about ten seconds on 2 CPU cores.

Training makes "absent" unambiguous. Each sentence appears twice: with its trigger
(target: its label) and with the trigger's embedding zeroed (target: 50/50), and filler
words are zeroed at random (target unchanged). Without the first, the model could answer
"negative" from the mere absence of a positive trigger, so the negative trigger would
carry no evidence; without both, a zero embedding (the baseline of occlusion and IG)
would be an unseen input that the model may read as a trigger.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from .data.registry import LABELS
from .data.synthetic import make_synthetic
from .forward import position_ids
from .models import left_pad
from .prompts import render


def build_planted_model(
    tokenizer,
    *,
    n_train: int = 256,
    steps: int = 200,
    batch_size: int = 32,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    lr: float = 3e-3,
    filler_dropout: float = 0.15,
    seed: int = 0,
    length: int = 8,
):
    """Train a tiny causal LM to answer the synthetic task's label from the trigger word.

    Args:
        tokenizer: the offline model's tokenizer (chat template and verbalisers reused).
        n_train: synthetic training sentences (seed 1; the test split uses seed 0).
        steps: AdamW steps on the cross-entropy of the label's verbaliser token.
        filler_dropout: probability of zeroing each filler word's embedding.
        length: words per synthetic sentence.

    Returns:
        The trained model in eval mode with eager attention (usable by every method of
        :mod:`xalign_utils.attribution`), on the CPU.
    """
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(cfg)
    labels = LABELS["synthetic"]
    answer = torch.tensor(
        [tokenizer(lab, add_special_tokens=False)["input_ids"][0] for lab in labels]
    )
    examples = make_synthetic(n_train, seed=1, length=length)
    rendered = [render(tokenizer, ex, "classify") for ex in examples]
    ids, mask = left_pad([r.input_ids for r in rendered], tokenizer.pad_token_id)
    positions = position_ids(mask)
    width = ids.shape[1]
    trigger = torch.zeros_like(ids, dtype=torch.bool)  # trigger-word tokens
    filler = torch.zeros_like(ids, dtype=torch.long)  # filler word index + 1 (0: not a word)
    for b, (ex, rp) in enumerate(zip(examples, rendered, strict=True)):
        offset = width - len(rp.input_ids)
        for w, span in enumerate(rp.word_tokens):
            for p in span:
                if w == ex.meta["trigger_position"]:
                    trigger[b, p + offset] = True
                else:
                    filler[b, p + offset] = w + 1
    gold = torch.tensor([labels.index(ex.label) for ex in examples])
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    embed = model.get_input_embeddings()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (batch_size,), generator=gen)
        bare = torch.rand(batch_size, generator=gen) < 0.5
        dropped = torch.rand((batch_size, length + 1), generator=gen) < filler_dropout
        dropped[:, 0] = False
        zero = dropped.gather(1, filler[idx]) | (trigger[idx] & bare.unsqueeze(1))
        emb = embed(ids[idx]) * (~zero).unsqueeze(-1)
        logits = model(
            inputs_embeds=emb,
            attention_mask=mask[idx],
            position_ids=positions[idx],
            logits_to_keep=1,
        ).logits[:, -1]
        target = torch.nn.functional.one_hot(gold[idx], len(labels)).float()
        target[bare] = 1.0 / len(labels)
        loss = -(target * torch.log_softmax(logits, -1)[:, answer]).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model
