"""LoRA fine-tuning: the cached loss equals a plain forward, training learns, regularisers
do what they say, runs are reproducible and resumable, and N processes match one."""

from __future__ import annotations

import copy
import dataclasses
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from xalign_utils import data, training
from xalign_utils.forward import forward_args, input_embeddings, make_forward, prepare
from xalign_utils.planted import build_planted_model
from xalign_utils.prompts import render, verbaliser_forms
from xalign_utils.scoring import label_logprobs, verbaliser_ids

pytestmark = pytest.mark.slow  # the offline model's tokenizer

LABELS = data.LABELS["synthetic"]
FAST = training.TrainConfig(
    lr=2e-2, epochs=3, batch_size=8, warmup_steps=2, lora_dropout=0.0, max_grad_norm=1.0
)  # 64 training examples: 8 steps an epoch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a busy machine they only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weak_model(tokenizer):
    """A planted-evidence model trained too briefly to answer (chance accuracy), so
    fine-tuning has something to learn and its attributions are not yet concentrated."""
    return build_planted_model(tokenizer, steps=25)


def train_examples(n: int = 64) -> list[data.Example]:
    return data.make_synthetic(n, seed=1, length=6)  # the planted model's training seed


def held_out(n: int = 32) -> list[data.Example]:
    return data.make_synthetic(n, seed=0, length=6)


def triggers(examples) -> list[list[int]]:
    return [ex.rationale_positions() for ex in examples]


def accuracy(model, tokenizer, examples) -> float:
    """Share of examples whose argmax label (whole-string scores) is the gold label."""
    model.eval()
    prompts = [render(tokenizer, e).input_ids for e in examples]
    pred = label_logprobs(model, tokenizer, prompts, "synthetic").argmax(1)
    return sum(LABELS[i] == e.label for i, e in zip(pred, examples, strict=True)) / len(examples)


def trigger_share(model, tokenizer, examples) -> float:
    """Mean share of the trigger in the input×gradient magnitude of the gold label."""
    model.eval()
    shares = training.word_attribution(model, prepare(model, tokenizer, examples, target="gold"))
    pos = torch.tensor([ex.meta["trigger_position"] for ex in examples])
    return float(shares.gather(1, pos.unsqueeze(1)).mean())


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def with_random_lora(model, cfg: training.TrainConfig):
    """LoRA on a copy, with non-zero B matrices (PEFT's B starts at 0, so A gets no gradient)."""
    peft_model = training.add_lora(copy.deepcopy(model), cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return peft_model.eval()


def plain_loss(model, tokenizer, examples, renormalise: bool) -> torch.Tensor:
    """The label loss from one uncached ``model(input_ids=prompt + form)`` per form."""
    losses = []
    for ex in examples:
        ids = render(tokenizer, ex).input_ids
        per_label = []
        for lab in LABELS:
            scores = []
            for form in verbaliser_ids(tokenizer, list(verbaliser_forms("synthetic", lab))):
                logits = model(input_ids=torch.tensor([ids + form])).logits[0].float()
                logp = torch.log_softmax(logits, -1)
                scores.append(sum(logp[len(ids) - 1 + i, t] for i, t in enumerate(form)))
            per_label.append(torch.logsumexp(torch.stack(scores), 0))
        logp = torch.stack(per_label)
        if renormalise:
            logp = torch.log_softmax(logp, 0)
        losses.append(-logp[LABELS.index(ex.label)])
    return torch.stack(losses).mean()


@pytest.mark.parametrize("renormalise", [True, False])
def test_label_loss_and_its_gradient_equal_a_plain_forward(weak_model, tokenizer, renormalise):
    model = with_random_lora(weak_model, FAST)
    examples = held_out(4)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = training.label_loss(
        model, prepare(model, tokenizer, examples, target="gold"), renormalise
    )
    ref = plain_loss(model, tokenizer, examples, renormalise)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-6)
    got = torch.autograd.grad(loss, params)
    want = torch.autograd.grad(ref, params)
    scale = max(float(w.abs().max()) for w in want)
    assert scale > 0
    for g, w in zip(got, want, strict=True):  # includes k/v LoRA of the cached prefix
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4 * scale)


def test_fine_tuning_makes_the_weak_model_competent(weak_model, tokenizer, tmp_path):
    before = accuracy(weak_model, tokenizer, held_out())
    curve = training.train(
        copy.deepcopy(weak_model), tokenizer, train_examples(), None, FAST, tmp_path, progress=False
    )
    assert len(curve) == 24 and list(curve["step"]) == list(range(1, 25))
    assert curve["loss"].iloc[-4:].mean() < 0.6 * curve["loss"].iloc[:4].mean()
    tuned = PeftModel.from_pretrained(copy.deepcopy(weak_model), tmp_path / "adapter")
    after = accuracy(tuned, tokenizer, held_out())
    assert before <= 0.7 and after >= 0.9, (before, after)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["steps"] == 24 and manifest["config"]["lr"] == FAST.lr
    assert manifest["seed"] == FAST.seed and manifest["n_examples"] == 64
    assert "base_model" in manifest and len(manifest["examples_sha256"]) == 64
    assert manifest["final_loss"] == pytest.approx(curve["loss"].iloc[-1])
    assert [p.name for p in training.checkpoints(tmp_path)] == [
        f"step-{s:07d}" for s in (8, 16, 24)
    ]


def test_rrr_penalty_counts_gradient_outside_the_rationale_only(weak_model, tokenizer):
    model = with_random_lora(weak_model, FAST)
    examples = held_out(4)
    batch = prepare(model, tokenizer, examples, target="gold")
    everything = [list(range(len(ex.flat_words()))) for ex in examples]
    assert float(training.rrr_penalty(model, batch, everything)) < 1e-12
    on_trigger = triggers(examples)
    penalty = training.rrr_penalty(model, batch, on_trigger)
    # reference: squared gradient of log p(gold) on the non-trigger words' tokens
    full, inp = input_embeddings(model, batch)
    inp = inp.detach().requires_grad_(True)
    value = make_forward(model, batch)(inp, *forward_args(batch, full.detach()))
    (grad,) = torch.autograd.grad(value.sum(), inp)
    trig = torch.tensor([r[0] for r in on_trigger]).unsqueeze(1)
    outside = batch.in_valid & (batch.tok_word != trig)
    want = (grad.pow(2).sum(-1) * outside).sum(-1)
    assert float(penalty) > 0
    assert float(penalty) == pytest.approx(float(want.mean()), rel=1e-4)
    # an empty rationale contributes 0 and still counts in the mean
    mixed = [on_trigger[0], [], on_trigger[2], []]
    got = training.rrr_penalty(model, batch, mixed)
    assert float(got) == pytest.approx(float((want[0] + want[2]) / 4), rel=1e-4)
    # the penalty is differentiable in the LoRA weights (double backward)
    grads = torch.autograd.grad(penalty, [p for p in model.parameters() if p.requires_grad])
    assert any(float(g.abs().max()) > 0 for g in grads)


def test_alignment_training_raises_the_trigger_share(weak_model, tokenizer, tmp_path):
    examples = train_examples()
    shares, curves = {}, {}
    for lam in (0.0, 1.0):
        cfg = dataclasses.replace(FAST, regulariser="align", lam=lam)
        model = copy.deepcopy(weak_model)
        curves[lam] = training.train(
            model, tokenizer, examples, triggers(examples), cfg, tmp_path / str(lam), progress=False
        )
        shares[lam] = trigger_share(model, tokenizer, held_out(16))
    # same first forward (same seed, data order, initial weights); λ only changes the steps
    assert curves[0.0]["label_loss"].iloc[0] == pytest.approx(curves[1.0]["label_loss"].iloc[0])
    assert curves[0.0]["reg"].iloc[0] == pytest.approx(curves[1.0]["reg"].iloc[0])
    assert curves[1.0]["reg"].iloc[-1] < curves[0.0]["reg"].iloc[-1]
    assert shares[1.0] > shares[0.0] + 0.05, shares


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
    weak_model, tokenizer, tmp_path
):
    cfg = dataclasses.replace(FAST, lora_dropout=0.1, checkpoint_steps=3)  # dropout: RNG restored
    examples = train_examples()
    whole = copy.deepcopy(weak_model)
    full_curve = training.train(
        whole, tokenizer, examples, None, cfg, tmp_path / "a", progress=False
    )
    first = training.train(
        copy.deepcopy(weak_model),
        tokenizer,
        examples,
        None,
        cfg,
        tmp_path / "b",
        progress=False,
        stop_after_steps=10,
    )  # checkpoints at 3, 6, 8 (epoch end) and 9; stopped after 10: step 10 is redone
    assert len(first) == 10 and not (tmp_path / "b" / "adapter").exists()
    with pytest.raises(ValueError, match="lr"):
        training.train(
            copy.deepcopy(weak_model),
            tokenizer,
            examples,
            None,
            dataclasses.replace(cfg, lr=1e-3),
            tmp_path / "b",
            progress=False,
        )
    resumed = copy.deepcopy(weak_model)
    curve = training.train(resumed, tokenizer, examples, None, cfg, tmp_path / "b", progress=False)
    a, b = lora_weights(whole), lora_weights(resumed)
    assert a.keys() == b.keys() and a
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    init = lora_weights(training.add_lora(copy.deepcopy(weak_model), cfg).get_base_model())
    assert init.keys() == a.keys() and not all(torch.equal(a[k], init[k]) for k in a)
    assert list(curve["loss"]) == list(full_curve["loss"])


KILLED_RUN = """
import json, sys, time
import torch
from xalign_utils import data, models, training
from xalign_utils.planted import build_planted_model

torch.set_num_threads(1)
out, fields = sys.argv[1], json.loads(sys.argv[2])
_, tokenizer = models.load_model(None, for_gradients=True, device="cpu")
model = build_planted_model(tokenizer, steps=25)
saves, save = [], torch.save


def save_then_hang(obj, path, *args, **kwargs):
    # the third checkpoint (step 8) hangs after its state is written, before it is renamed
    # into place, so the parent's SIGKILL lands in the middle of a checkpoint
    save(obj, path, *args, **kwargs)
    saves.append(path)
    if len(saves) == 3:
        time.sleep(600)


torch.save = save_then_hang
cfg = training.TrainConfig(**fields)  # the parent's config, field for field
training.train(model, tokenizer, data.make_synthetic(64, seed=1, length=6), None, cfg, out,
               progress=False)
"""


def test_a_run_killed_mid_checkpoint_resumes_to_the_uninterrupted_weights(
    weak_model, tokenizer, tmp_path
):
    """SIGKILL a training process while it writes a checkpoint; resuming in this process
    ignores the half-written one and ends with the uninterrupted run's weights."""
    cfg = dataclasses.replace(FAST, lora_dropout=0.1, checkpoint_steps=3)
    script, out = tmp_path / "run.py", tmp_path / "killed"
    script.write_text(KILLED_RUN)
    child = subprocess.Popen(
        [sys.executable, str(script), str(out), json.dumps(dataclasses.asdict(cfg))]
    )
    half = out / "checkpoints" / "step-0000008.tmp" / "state.pt"
    deadline = time.monotonic() + 300
    while not half.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL and half.exists(), "killed before step 8's checkpoint"
    assert [p.name for p in training.checkpoints(out)] == ["step-0000003", "step-0000006"]
    whole = copy.deepcopy(weak_model)
    training.train(
        whole, tokenizer, train_examples(), None, cfg, tmp_path / "whole", progress=False
    )
    resumed = copy.deepcopy(weak_model)
    training.train(resumed, tokenizer, train_examples(), None, cfg, out, progress=False)
    a, b = lora_weights(whole), lora_weights(resumed)
    assert a.keys() == b.keys() and a
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_runs_are_deterministic_for_a_seed(weak_model, tokenizer, tmp_path):
    cfg = dataclasses.replace(FAST, epochs=1, lora_dropout=0.1)

    def curve(seed: int, name: str):
        run = dataclasses.replace(cfg, seed=seed)
        model = copy.deepcopy(weak_model)
        return training.train(
            model, tokenizer, train_examples(), None, run, tmp_path / name, progress=False
        )

    a, b, c = curve(0, "a"), curve(0, "b"), curve(1, "c")
    assert a.equals(b)
    assert not a["loss"].equals(c["loss"])


def test_assert_no_leakage_names_the_shared_id_and_text():
    train, evaluation = train_examples(8), held_out(8)
    data.assert_no_leakage(train, evaluation)  # distinct seeds: no overlap
    with pytest.raises(ValueError, match="synthetic-1-3"):
        data.assert_no_leakage(train, evaluation + [train[3]])
    copied = dataclasses.replace(
        evaluation[0],
        segments={"text": "  " + train[5].segments["text"].upper() + " "},
        words={"text": train[5].words["text"]},
    )
    with pytest.raises(ValueError, match=r"synthetic-0-0.*synthetic-1-5"):
        data.assert_no_leakage(train, [copied])


def test_two_processes_take_the_steps_of_one(weak_model, tokenizer, tmp_path):
    cfg = dataclasses.replace(FAST, epochs=2, batch_size=7, regulariser="align", lam=1.0)
    examples = train_examples(21)  # 3 batches of 7 an epoch: shards of 4 and 3
    weak_model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data.save_examples(examples, tmp_path / "train.jsonl")
    one = training.train(
        copy.deepcopy(weak_model),
        tokenizer,
        examples,
        triggers(examples),
        cfg,
        tmp_path / "one",
        device="cpu",
        progress=False,
    )
    two = training.launch_training(
        tmp_path / "model", tmp_path / "train.jsonl", tmp_path / "two", cfg, num_processes=2
    )
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["num_processes"] == 2
    assert list(two["step"]) == list(one["step"]) == list(range(1, 7))
    for col in ("loss", "label_loss", "reg"):  # float32, other padding and summation order
        torch.testing.assert_close(
            torch.tensor(two[col].to_numpy()),
            torch.tensor(one[col].to_numpy()),
            rtol=1e-4,
            atol=1e-5,
        )
    a, b = (
        load_file(tmp_path / run / "adapter" / "adapter_model.safetensors")
        for run in ("one", "two")
    )
    assert a.keys() == b.keys() and a
    diffs = torch.cat([(b[k] - a[k]).abs().flatten() for k in a])
    for k in a:
        # Adam's normalised steps can turn rounding in a near-zero gradient into a step of
        # up to ~lr/100 on an element (seen: 1.05e-4 at lr 2e-2 on 1 of 16k elements, with
        # the packages a fresh .venv installed on 2026-11-30); the bulk agrees to rounding
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=cfg.lr / 50)
    assert (diffs > 1e-5).float().mean() < 0.02
