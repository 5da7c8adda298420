"""Paths, profiles and the run configuration.

Every directory is named here, anchored to the project root, so no other module builds paths
of its own. Importing this module does no work. A profile is data: a :class:`RunConfig`
whose fields any notebook parameter (or ``make all NAME=value``) overrides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "data"
PROCESSED_DIR = DATA_DIR / "processed"
MODELS_DIR = DATA_DIR / "models"
#: Published LoRA adapters (notebook 05), one folder each with a manifest.
ADAPTERS_DIR = MODELS_DIR / "adapters"
#: Published numbers of the reproduced papers (transcribed; see reference/README.md).
REFERENCE_DIR = ROOT / "reference"
BENCH_DIR = ROOT / "bench"  # benchmarks and probes (make bench, bench/*.py) and their tables
RUNS_DIR = ROOT / "runs"
FIGURES_DIR = ROOT / "figures"
TABLES_DIR = FIGURES_DIR / "tables"
NOTEBOOKS_DIR = ROOT / "notebooks"

#: Name used for the offline default model everywhere (configs, tables, cache folder).
OFFLINE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

RAW_DATA_HELP = """\
No raw-data folder was found. xalign looks, in order, at
  1. the folder named by the environment variable XALIGN_RAW_DATA,
  2. ../shared/data next to the project root ({shared}),
  3. data/raw/ inside the project ({local}).
Put the datasets there in their published formats, one folder each:
  esnli/ (s1.test, s2.test, labels.test, preproc1_expl_{{1,2,3}}.test, esnli_test_highlights.csv, ... .dev)
  sst2/ (train.tsv, dev.tsv)   hatexplain/ (test.csv, val.csv)   fever/ (val.jsonl, test.jsonl, docs/)
  movies/ (withRats_pos/, withRats_neg/)   xnli/ (dev-<lang>.tsv)   knowns/ (known_1000.json, LongRA.json)
or set XALIGN_RAW_DATA=/path/to/that/folder."""


def raw_data_dir() -> Path:
    """Return the raw-data folder (``XALIGN_RAW_DATA``, ``../shared/data``, ``data/raw``).

    Raises:
        FileNotFoundError: none exists; the message says what to put where.
    """
    env = os.environ.get("XALIGN_RAW_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"XALIGN_RAW_DATA={env} is not a folder.\n\n" + _raw_help())
        return path
    for candidate in (ROOT.parent / "shared" / "data", DATA_DIR / "raw"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(_raw_help())


def _raw_help() -> str:
    return RAW_DATA_HELP.format(shared=ROOT.parent / "shared" / "data", local=DATA_DIR / "raw")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers. Its :meth:`hash` keys stored results.

    Attributes:
        profile: ``smoke``, ``default`` or ``paper``.
        model: Hub id or local folder; ``None`` means the offline default model.
        adapter: a LoRA adapter published by notebook 05 (``data/models/adapters/<name>``)
            that every notebook applies to the model (results: :attr:`run_name`).
        datasets: evaluation datasets, in the order the notebooks report them.
        n_eval: evaluation examples per dataset (sampled, stratified by label).
        n_train: training examples per dataset (notebook 05).
        seed: seed for sampling, random baselines and training.
        batch_size: examples per forward pass (scoring, attribution).
        gen_batch_size: prompts per generation batch (nearly free per step on a CPU).
        max_new_tokens: generation budget for word lists (free text gets twice this).
        topk_fixed: k for Top-Var prompts on datasets without human rationales.
        ig_steps: integrated-gradients steps.
        rationale_rule: how annotators' masks combine into one rationale
            (``majority``: at least half of the annotators who marked; ``union``).
        max_input_words: inputs longer than this are truncated (long movie reviews, FEVER
            documents); truncation is counted and reported.
        extra_datasets: loaded and validated by notebook 01 but not evaluated by default.
        n_attr: examples per dataset attributed by the one-pass methods (attention
            family, saliency, input×gradient, random) in notebook 03.
        n_attr_costly: examples per dataset for the many-pass methods (IG, gradient
            SHAP, occlusion, LIME, KernelSHAP): the first of the ``n_attr`` (shared).
        n_attr_noiser: examples per dataset for Noiser (the first of the ``n_attr``).
        next_token_datasets, n_next_token: the Noiser paper's setting in notebooks 03/04
            (plain prompts, greedy next token, every method): datasets and how many
            prompts of each (same order); they name their stored tables.
        next_token_ig_steps: IG steps there (in the table name). From an all-zero prompt
            IG converges at no step count a CPU affords (README, next-token IG): 32.
        n_samples: perturbation samples of LIME and KernelSHAP (gradient SHAP: a quarter).
        noise_samples: Noiser's Gaussian noise samples per token.
        bisection_steps: Noiser's bisection steps for the noise scale.
        n_faith: examples per dataset whose attributions notebook 04 scores by erasure
            (each costs about ten re-scored prompts per method).
        n_explain: the first examples per dataset 02 explains (0: all; the XNLI track: n_attr).
        rationale_labels: labels notebook 02 elicits word lists for (``gold``, ``pred`` or
            both; names its table): gold-label lists meet human rationales, predicted-label
            lists meet attributions; a prompt the same for both is generated once.
        methods: attribution methods of notebook 03 (empty: every registered method).
        target: the label attributions explain (``pred``, ``gold`` or ``contrast``).
        num_processes: processes the attribution runner shards over (numbers unchanged).
        n_heatmap: heat maps drawn per dataset in notebook 03 (presentation only).
        strategy, mask_text: how notebook 04 erases words (``delete``, or ``mask`` with that text).
        k_values: list lengths of notebook 04's k-sensitivity check.
        train_datasets: datasets notebook 05 fine-tunes on (their ``train`` splits:
            e-SNLI dev, SST-2 train, HateXplain val), one multi-task adapter.
        train_per_dataset: training examples per dataset notebook 05 uses (the first of
            the ``n_train`` notebook 01 wrote); ``train_sizes`` lists exceptions as
            ``name:n`` (``sst2:800``: SST-2's short prompts make its examples cheap).
        train_lr, train_epochs, train_batch_size, lora_r, lora_alpha, lora_dropout,
            train_warmup_steps: LoRA fine-tuning hyper-parameters (the paper profile's are
            Fayyaz et al.'s Table A.2; the default's learning rate comes from
            ``bench/lr_sweep.py``).
        train_checkpoints: evaluation points per run besides the untrained model (the
            paper: one per epoch), for the accuracy ↔ alignment/faithfulness correlations.
        n_train_eval: evaluation examples per dataset at every checkpoint (first of n_eval).
        regulariser, reg_lambdas, reg_seeds, reg_source, n_reg_train, reg_steps: the
            explanation-regularised runs of notebook 05 (``rrr`` or ``align``; λ values,
            0 included; seeds; rationale source ``human``; training examples and steps).
        n_reg_eval: evaluation examples per dataset each regularised run is scored on (the
            first of the ``n_train_eval``; occlusion costs ~6 s per example on 2 cores).
        n_guide: examples per dataset whose explanations notebook 06 steers (the first of
            the ``n_attr``, so both attribution methods it needs exist for them).
        guide_alphas: soft-bias strengths of notebook 06 (logit units for the most
            attributed word; 0 included: plain greedy decoding, the reference).
        guide_k, guide_beams: the top-k attributed words constrained explanations contain; beams.
        core_only: skip the tables 07 never reads of a dataset track (``make xnli``).
    """

    profile: str = "default"
    model: str | None = None
    adapter: str | None = None
    datasets: tuple[str, ...] = ("esnli", "sst2", "hatexplain")
    n_eval: int = 200
    n_train: int = 1000
    seed: int = 13
    batch_size: int = 16
    gen_batch_size: int = 64
    max_new_tokens: int = 32
    topk_fixed: int = 3
    ig_steps: int = 32
    rationale_rule: str = "majority"
    max_input_words: int = 256
    extra_datasets: tuple[str, ...] = ("fever", "movies", "xnli", "knowns", "longra", "synthetic")
    n_attr: int = 48
    n_attr_costly: int = 6
    n_attr_noiser: int = 2
    next_token_datasets: tuple[str, ...] = ("knowns", "longra")
    n_next_token: tuple[int, ...] = (50, 6)
    next_token_ig_steps: int = 32
    n_samples: int = 64
    noise_samples: int = 10
    bisection_steps: int = 10
    n_faith: int = 12
    n_explain: int = 0
    rationale_labels: str = "gold,pred"
    methods: tuple[str, ...] = ()
    target: str = "pred"
    num_processes: int = 1
    n_heatmap: int = 2
    strategy: str = "delete"
    mask_text: str = "_"
    k_values: tuple[int, ...] = (1, 2, 3, 5, 8)
    train_datasets: tuple[str, ...] = ("esnli", "sst2", "hatexplain")
    train_per_dataset: int = 300
    train_sizes: tuple[str, ...] = ()
    train_lr: float = 2e-4
    train_epochs: int = 1
    train_batch_size: int = 8
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    train_warmup_steps: int = 10
    train_checkpoints: int = 4
    n_train_eval: int = 100
    regulariser: str = "rrr"
    reg_lambdas: tuple[float, ...] = (0.0, 0.1, 1.0)
    reg_seeds: tuple[int, ...] = (13, 14)
    reg_source: str = "human"
    n_reg_train: int = 200
    reg_steps: int = 25
    n_reg_eval: int = 100
    n_guide: int = 16
    guide_alphas: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0)
    guide_k: int = 3
    guide_beams: int = 4
    core_only: bool = False
    notes: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def model_name(self) -> str:
        """The model's public name (the offline default's Hub id when none is set)."""
        return self.model or OFFLINE_MODEL

    def hash(
        self, *, attribution: bool = False, training: bool = False, guide: bool = False
    ) -> str:
        """Short stable hash of every field that changes results (not ``notes``).

        Args: include :data:`ATTRIBUTION_FIELDS` (``attribution``; left out by default so
        tuning notebook 03 never invalidates notebook 02's generations), and with them
        :data:`TRAINING_FIELDS` (``training``, notebook 05) or :data:`GUIDE_FIELDS` (06).
        """
        skip = {"notes", *UNHASHED_FIELDS}
        skip |= set() if training else set(TRAINING_FIELDS)
        skip |= set() if guide else set(GUIDE_FIELDS)
        skip |= set() if attribution or training or guide else set(ATTRIBUTION_FIELDS)
        payload = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        payload["model"] = self.model_name
        for optional in ("adapter", "train_sizes", "n_explain"):  # hashes stay as without
            if optional in payload and not payload[optional]:
                del payload[optional]
        blob = json.dumps(payload, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def run_name(self) -> str:
        """``<profile>``, then ``+<adapter>`` on an adapter and ``+<dataset>...`` when the
        datasets are not the profile's (e.g. ``default+xnli-en+xnli-de``, the XNLI track):
        such runs keep their own tables and figures instead of overwriting the profile's."""
        own = PROFILES[self.profile].datasets if self.profile in PROFILES else self.datasets
        tracks = [self.adapter] if self.adapter else []
        return "+".join([self.profile, *tracks, *(self.datasets if self.datasets != own else ())])

    @property
    def run_dir(self) -> Path:
        """``runs/<run_name>/``: executed notebooks and per-stage tables."""
        return RUNS_DIR / self.run_name

    @property
    def processed_dir(self) -> Path:
        """``data/processed/<profile>/``: the evaluation and training splits."""
        return PROCESSED_DIR / self.profile

    @property
    def figures_dir(self) -> Path:
        """``figures/`` (``adapters/<adapter>/``, ``tracks/<run_name>/`` below it); the
        smoke profile's go beside its run, so tests never overwrite thesis figures."""
        if self.profile == "smoke":
            return self.run_dir / "figures"
        if self.run_name == self.profile:
            return FIGURES_DIR
        if self.adapter and self.run_name == f"{self.profile}+{self.adapter}":
            return FIGURES_DIR / "adapters" / self.adapter
        return FIGURES_DIR / "tracks" / self.run_name

    @property
    def tables_dir(self) -> Path:
        """Where LaTeX/CSV tables go (``figures/tables`` except under smoke)."""
        return self.figures_dir / "tables"


#: Fields only the attribution stages read (see :meth:`RunConfig.hash`).
ATTRIBUTION_FIELDS = tuple(
    "ig_steps n_attr n_attr_costly n_attr_noiser n_samples noise_samples "
    "bisection_steps n_faith methods target strategy mask_text k_values".split()
)

#: Fields only notebook 05 reads: its tables are keyed by ``RunConfig.hash(training=True)``, so
#: tuning the training never invalidates the stored tables of 02-04.
TRAINING_FIELDS = tuple(
    "train_datasets train_per_dataset train_sizes train_lr train_epochs train_batch_size "
    "lora_r lora_alpha lora_dropout train_warmup_steps train_checkpoints n_train_eval "
    "regulariser reg_lambdas reg_seeds reg_source n_reg_train reg_steps n_reg_eval".split()
)

#: Fields only notebook 06 reads (keyed by ``RunConfig.hash(guide=True)``: tuning it keeps 02-05).
GUIDE_FIELDS = ("n_guide", "guide_alphas", "guide_k", "guide_beams")

#: Fields that never enter a hash: they change no stored number (``num_processes``: the
#: sharded runner is tested equal to one process; ``n_heatmap``: figures only; ``core_only``
#: skips tables) or name their own stored table (``rationale_labels``, next-token's).
UNHASHED_FIELDS = tuple(
    "rationale_labels num_processes n_heatmap next_token_datasets n_next_token "
    "next_token_ig_steps core_only".split()
)

SMOKE_METHODS = """random position_from_start tokens_per_word word_rarity attention input_x_gradient
integrated_gradients occlusion lime noiser"""  # one of each null and family; tests cover the rest
PROFILES: dict[str, RunConfig] = {
    "smoke": RunConfig(  # make test's budget (README): two datasets, 10 methods
        profile="smoke",
        datasets=("esnli", "sst2"),
        methods=tuple(SMOKE_METHODS.split()),
        n_eval=4,
        n_train=16,
        batch_size=8,
        max_new_tokens=24,
        ig_steps=4,
        max_input_words=64,
        n_attr=3,
        n_attr_costly=1,  # make test's budget: every many-pass method on one example each
        n_attr_noiser=1,
        n_next_token=(1, 1),
        next_token_ig_steps=4,
        n_samples=8,
        noise_samples=2,
        bisection_steps=2,
        n_faith=1,
        train_datasets=("esnli", "sst2"),  # make test's budget: the mixing path, no more
        train_per_dataset=8,
        train_batch_size=4,
        train_checkpoints=2,
        n_train_eval=2,
        reg_lambdas=(0.0, 1.0),
        reg_seeds=(13,),
        n_reg_train=8,
        reg_steps=2,
        n_reg_eval=2,
        n_guide=1,
        guide_alphas=(0.0, 4.0),
        guide_k=2,
        guide_beams=2,
    ),
    # IG 128 steps (bench/ig_steps.csv); LIME/KernelSHAP 32 samples, Noiser 4 × 6 on 12; 05:
    # 800 SST-2 + 100 e-SNLI/HateXplain at 5e-4 in ≤ 35 min (README, fine-tuning; bench/).
    "default": RunConfig(
        profile="default",
        ig_steps=128,
        n_samples=32,
        n_attr_noiser=12,
        noise_samples=4,
        bisection_steps=6,
        train_per_dataset=100,
        train_sizes=("sst2:800",),
        train_lr=5e-4,
        train_checkpoints=3,
        n_train_eval=30,
        n_reg_train=48,
        reg_steps=6,
        n_reg_eval=10,
    ),
    "paper": RunConfig(
        profile="paper",
        model="meta-llama/Meta-Llama-3-8B-Instruct",
        n_eval=300,
        n_train=5000,
        batch_size=8,
        max_new_tokens=64,
        ig_steps=50,
        max_input_words=512,
        n_attr=300,
        n_attr_costly=300,
        n_attr_noiser=300,
        n_next_token=(300, 300),
        next_token_ig_steps=50,
        n_samples=256,
        n_faith=300,
        # Fayyaz et al. Table A.2 (their e-SNLI/FEVER learning rate), one checkpoint per epoch
        train_per_dataset=5000,
        train_lr=7e-6,
        train_epochs=10,
        train_batch_size=64,
        lora_r=32,
        lora_alpha=16,
        train_checkpoints=10,
        n_train_eval=300,
        reg_seeds=(13, 14, 15),
        n_reg_train=2000,
        reg_steps=100,
        n_reg_eval=300,
        n_guide=300,
    ),
}


def _coerce(name: str, value: object, default: object) -> object:
    """Turn a command-line string into the type of the field's default."""
    if value is None or value == "":
        return default
    if isinstance(default, tuple):
        parts = (
            [part.strip() for part in value.split(",") if part.strip()]
            if isinstance(value, str)
            else list(value)  # type: ignore[call-overload]
        )
        if default and all(isinstance(v, int) for v in default):
            return tuple(int(p) for p in parts)
        if default and all(isinstance(v, float) for v in default):
            return tuple(float(p) for p in parts)
        return tuple(parts)
    if isinstance(default, bool):
        return str(value).lower() in {"1", "true", "yes"}
    if isinstance(default, int):
        return int(value)  # type: ignore[arg-type]
    if isinstance(default, float):
        return float(value)  # type: ignore[arg-type]
    return str(value)


def load_config(profile: str = "default", **overrides: object) -> RunConfig:
    """Return a profile with overrides applied (``None`` or ``""`` keeps the profile's value).

    Keys are field names in any case (``N_EVAL`` or ``n_eval``). The model can also be
    set with the environment variable ``XALIGN_MODEL``.

    Raises:
        KeyError: unknown profile or field; the message lists the valid ones.
    """
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    base = PROFILES[profile]
    names = {f.name for f in dataclasses.fields(RunConfig)} - {"profile", "notes"}
    changes: dict[str, object] = {}
    for key, value in overrides.items():
        name = key.lower()
        if name not in names:
            raise KeyError(f"unknown parameter {key!r}; valid: {sorted(names)}")
        default = getattr(base, name)
        if name == "model":
            changes[name] = value or base.model
        else:
            changes[name] = _coerce(name, value, default)
    if changes.get("model") is None and os.environ.get("XALIGN_MODEL"):
        changes["model"] = os.environ["XALIGN_MODEL"]
    return dataclasses.replace(base, **changes)


def parameter_names() -> list[str]:
    """Every overridable run-config field as a notebook / ``make`` parameter (``N_EVAL``).

    The Makefile derives its list of command-line overrides from this, so a new field is
    overridable everywhere without editing anything else.
    """
    return [f.name.upper() for f in dataclasses.fields(RunConfig) if f.name != "notes"]


def from_parameters(namespace: Mapping[str, object]) -> RunConfig:
    """Build the run config from a notebook's parameters (``from_parameters(globals())``).

    Reads ``PROFILE`` and every name of :func:`parameter_names` present in ``namespace``;
    papermill injects the ones given on the command line, so a parameter the notebook's
    own cell does not list is still honoured. ``None`` keeps the profile's value.
    """
    profile = str(namespace.get("PROFILE") or "default")
    names = [n for n in parameter_names() if n != "PROFILE" and n in namespace]
    overrides = {name: namespace[name] for name in names}
    return load_config(profile, **overrides)
