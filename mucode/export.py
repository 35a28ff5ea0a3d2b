"""Hub export of a run's generator and verifier: locate them, save them as Hub-ready folders with
model cards, plan and push the upload. The stage that wires these together is mucode/stages/export.py
(`python pipelines/export.py run_dir=runs/default`).

What is exported (RunLayout): generator i is `layout.sft(i)`'s model (0: the warm start's); the
verifier is the final verifier's (`layout.final_verifier_stage()`) or iteration i's. Every source
stage must be complete (its manifest says so); the run's summary.json (report.Summary) supplies the
cards' metrics.

A folder is a `save_pretrained` folder (safetensors) that loads with the Auto classes: the generator
with AutoModelForCausalLM, its tokenizer with the chat template and a generation_config whose eos is
the end-of-turn token; a scalar-head verifier with AutoModelForSequenceClassification (num_labels=1,
score at the input's last token: its pad token is not eos); an LM-head verifier (ratio, likelihood, loglik:
mucode.lm_verifier) with AutoModelForCausalLM, with its mucode_verifier.json and, for ratio, its
reference model in `reference/` (or named by Hub id when the reference is a Hub model); its card
shows how to compute the score with transformers alone. README.md is the model card: YAML metadata
(base_model, datasets, tags, license, model-index from summary.json) and the body rendered from
mucode/templates/<kind>_card.md (Jinja, huggingface_hub.ModelCard.from_template): intro, results,
usage, recipe, resolved configs.

Push: huggingface_hub `create_repo` + `upload_folder`, with the token from $HF_TOKEN only (never
from a config file, never logged).

Limits: the model is loaded and saved again (normalising to safetensors), so export needs the
model's size in CPU memory; metadata knows the Hub ids of SmolLM2, MBPP and HumanEval, and any base
given as a Hub id; for other bases pass a license.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from mucode import artifacts
from mucode.artifacts import RunLayout
from mucode.lm_verifier import REFERENCE, SavedHead, VerifierHead
from mucode.models import SMOLLM2, TINY, DType, ModelConfig, end_of_turn, load_verifier
from mucode.prompts import INSTRUCTION, RETRY
from mucode.report import Summary, VerifierResult, finite, fmt_num, fmt_pct, fmt_pcts
from mucode.search import Selector

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
CONFIG = "config.yaml"
"""The resolved config a stage (and the main job) writes beside its outputs."""
BASE_MODEL_IDS = {SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct"}
DATASETS = {  # task name -> (Hub dataset id or None, display name)
    "embedded": (None, "mucode embedded suite"),
    "mbpp": ("google-research-datasets/mbpp", "MBPP"),
    "humaneval": ("openai/openai_humaneval", "HumanEval"),
    "jsonl": (None, "custom problems"),
}
OPEN_LICENSED = (TINY, SMOLLM2)  # the tiny model (trained here) and SmolLM2 are Apache-2.0
GENERATOR, VERIFIER = "generator", "verifier"


@dataclass
class Source:
    """One model to export: its stage folder and where its metrics sit in the run's Summary."""

    kind: str
    """generator or verifier."""
    label: str
    """Human name: "generator 2", "final verifier"."""
    stage_dir: Path
    row: str | None = None
    """A generator's name in Summary.generators ("base", "iter2"); None for a verifier."""
    final: bool = False
    """A verifier that is the run's final one (Summary.verifier holds its metrics)."""

    @property
    def model_dir(self) -> Path:
        return RunLayout.model(self.stage_dir)


def locate(layout: RunLayout, kind: str, iteration: int | None) -> Source:
    """The complete stage holding the generator/verifier of `iteration` (None: the last one)."""
    if kind == GENERATOR:
        i = layout.last_generator() if iteration is None else iteration
        stage = layout.sft(i) if i else layout.warmup
        return Source(kind, f"generator {i}", _checked(stage), row=layout.generator_name(i))
    if iteration == 0:
        raise ValueError("iteration=0 has no verifier (the first is trained in iteration 1); use which=generator")
    final = layout.final_verifier_stage()
    stage = (final or layout.final_verifier) if iteration is None else layout.verifier(iteration)
    index = next((i for i in layout.iterations() if layout.verifier(i) == stage), None)
    label = f"verifier {index}" if index is not None else "final verifier"
    return Source(kind, label, _checked(stage), final=stage == final)


def _checked(stage: Path) -> Path:
    artifacts.require(RunLayout.model(stage), "model folder", f"the stage that writes {stage}")
    if artifacts.read_manifest(stage) is None:
        raise ValueError(f"{stage}: stage not complete (no complete manifest.json); rerun it before exporting")
    return stage


def save_generator(source: Path, out: Path) -> None:
    """Generator + tokenizer (with chat template) as safetensors; generation stops at end of turn."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    if not tok.chat_template:
        raise ValueError(f"{source}: tokenizer has no chat template; the exported generator needs one")
    eot = end_of_turn(tok, source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
    gen = model.generation_config
    others = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    eos = [eot, *(i for i in others if i is not None and i != eot)]
    gen.eos_token_id = eos[0] if len(eos) == 1 else eos
    gen.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else eot
    gen.bos_token_id = tok.bos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)


def save_verifier(source: Path, out: Path) -> None:
    """Verifier + tokenizer as safetensors: a scalar head (num_labels=1, with a pad token that is not eos),
    or an LM head (a causal LM, its head file, and a ratio head's reference in `reference/` unless the
    reference is a Hub id)."""
    from transformers import AutoConfig

    head = SavedHead.read(source)
    if head.head is not VerifierHead.scalar:
        save_generator(source, out)
        reference = head.reference
        if head.head is VerifierHead.ratio and Path(ref := head.reference_path(source)).is_dir():
            save_generator(Path(ref), out / REFERENCE)
            reference = REFERENCE
        SavedHead(head.head, head.beta, reference).write(out)
        return
    archs = AutoConfig.from_pretrained(source).architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):  # load_verifier would add a fresh head
        raise ValueError(f"{source}: not a verifier (architectures {archs}); "
                         "expected a *ForSequenceClassification folder")
    model, tok = load_verifier(str(source), ModelConfig(dtype=DType.auto))
    model.save_pretrained(out)
    tok.save_pretrained(out)


@dataclass
class RunFacts:
    """What the card says about the run: base model, task, license and the resolved configs."""

    run_name: str
    base: str | None
    """model.name_or_path as configured ("tiny", "smollm2", a Hub id, a folder)."""
    base_model: str | None
    """Hub id for the card's base_model, when there is one."""
    task: str | None
    license: str
    configs: dict[str, str]
    """File name -> resolved config YAML (the stage's config.yaml, the run's config.yaml)."""

    @classmethod
    def read(cls, run_dir: Path, stage_dir: Path, license: str | None) -> RunFacts:
        import yaml

        configs = {str(p.relative_to(run_dir.parent)): p.read_text()
                   for p in (stage_dir / CONFIG, run_dir / CONFIG) if p.is_file()}
        if not configs:
            raise FileNotFoundError(f"{stage_dir / CONFIG}: resolved config not found; the card needs it")
        parsed = [yaml.safe_load(text) or {} for text in configs.values()]
        base = next((c["model"]["name_or_path"] for c in parsed if "name_or_path" in c.get("model", {})), None)
        task = next((str(c["task"]["name"]) for c in parsed if "name" in c.get("task", {})), None)
        if license is None:
            license = "apache-2.0" if base in OPEN_LICENSED else "other"
            if license == "other":
                log.warning("base model %s: card license set to 'other'; pass license=<id> to name it", base)
        return cls(run_dir.name, base, _hub_base(base), task, license, configs)


def _hub_base(base: str | None) -> str | None:
    if base is None or base == TINY or Path(base).expanduser().exists():
        return None
    if base in BASE_MODEL_IDS:
        return BASE_MODEL_IDS[base]
    return base if base.count("/") == 1 and not base.startswith((".", "/", "~")) else None


def model_card(source: Source, facts: RunFacts, summary: Summary, repo_id: str | None) -> str:
    """README.md text: YAML metadata (parsed by huggingface_hub.ModelCard) + the body from the template."""
    from huggingface_hub import ModelCard, ModelCardData

    generator = source.kind == GENERATOR
    head = SavedHead(VerifierHead.scalar) if generator else SavedHead.read(source.model_dir)
    reference = None  # how the card's snippet loads a ratio head's reference
    if head.head is VerifierHead.ratio:
        local = Path(head.reference_path(source.model_dir)).is_dir()
        reference = f'repo, subfolder="{REFERENCE}"' if local else f'"{head.reference}"'
    name = repo_id.split("/")[-1] if repo_id else f"mucode-{facts.run_name}-{source.kind}"
    hub_id, dataset = DATASETS.get(facts.task or "", (None, facts.task or "unknown task"))
    tags = ["mucode", "code-generation", "multi-turn"]
    tags += ["expert-iteration"] if generator else ["reward-model", "verifier"]
    results = eval_results(source, summary, hub_id or f"mucode/{facts.task}", dataset)
    data = ModelCardData(
        model_name=name, base_model=facts.base_model, datasets=[hub_id] if hub_id else None,
        license=facts.license, library_name="transformers", tags=tags, eval_results=results or None,
        pipeline_tag="text-classification" if head.head is VerifierHead.scalar and not generator
        else "text-generation",
    )
    card = ModelCard.from_template(
        data, template_path=TEMPLATES / f"{source.kind}_card.md",
        name=name, label=source.label, run_name=facts.run_name, base=facts.base_model or facts.base,
        dataset=dataset, split=split(summary), summary=summary, selectors=list(Selector), row=source.row,
        final=source.final, warm_start=source.row == RunLayout.generator_name(0), configs=facts.configs,
        repo=repo_id or f"<user>/{name}", instruction=INSTRUCTION, retry=RETRY,
        pct=fmt_pct, pcts=fmt_pcts, num=fmt_num, head=head.head.value, beta=head.beta, reference=reference,
    )
    return str(card)


def eval_results(source: Source, summary: Summary, dataset_type: str, dataset_name: str) -> list:
    """model-index entries for this model's own metrics in the summary (none if it has none)."""
    from huggingface_hub import EvalResult

    if source.kind == VERIFIER:
        common = dict(task_type="text-classification", task_name="Code correctness verification",
                      dataset_type=dataset_type, dataset_name=dataset_name, dataset_split="valid")
        own = summary.verifier if source.final else VerifierResult()
        pairs = [("roc_auc", "AUC", own.auc), ("accuracy", "within-problem pair accuracy", own.pair_accuracy),
                 ("accuracy", "accuracy (score > 0)", own.accuracy)]
        return [EvalResult(**common, metric_type=kind, metric_value=v, metric_name=name)
                for kind, name, v in pairs if finite(v)]
    row = summary.generators.get(source.row)
    if row is None:
        log.warning("summary.json has no generators.%s; the card carries no metrics for %s", source.row, source.label)
        return []
    common = dict(task_type="text-generation", task_name="Multi-turn code generation",
                  dataset_type=dataset_type, dataset_name=dataset_name, dataset_split=split(summary))
    turns, n = row.turns or "T", row.candidates or "N"
    pairs = [(f"greedy, {turns} turns", row.greedy.accuracy)]
    pairs += [(f"BoN@{n} {s.value}, {turns} turns", row.bon_accuracy(s)) for s in Selector]
    return [EvalResult(**common, metric_type="accuracy", metric_value=v, metric_name=f"{what} accuracy")
            for what, v in pairs if finite(v)]


def split(summary: Summary) -> str:
    """The evaluation split: as the eval stage recorded it, else test."""
    splits = [g.split for g in summary.generators.values() if g.split]
    return str(splits[-1]) if splits else "test"


def write_folder(source: Source, facts: RunFacts, summary: Summary, repo_id: str | None, folder: Path) -> Path:
    """The Hub-ready folder of one model with its card, written atomically."""
    with artifacts.atomic_dir(folder) as tmp:
        (save_generator if source.kind == GENERATOR else save_verifier)(source.model_dir, tmp)
        (tmp / "README.md").write_text(model_card(source, facts, summary, repo_id), encoding="utf-8")
    log.info("exported %s (%s) to %s", source.label, source.model_dir, folder)
    return folder


@dataclass
class Upload:
    """What one push sends: a folder's files and their sizes, to a repo."""

    folder: Path
    repo_id: str | None
    files: list[tuple[str, int]] = field(default_factory=list)

    def describe(self) -> list[str]:
        total = sum(size for _, size in self.files)
        head = f"{self.folder} -> {self.repo_id or '(no repo_id set)'}: {len(self.files)} files, {_size(total)}"
        return [head, *(f"  {name}  {_size(size)}" for name, size in self.files)]


def upload_plan(folder: Path, repo_id: str | None) -> Upload:
    """Every file of `folder` (relative names, sizes in bytes) bound for `repo_id`."""
    files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return Upload(folder, repo_id, files)


def hub_token() -> str:
    """The Hub write token: $HF_TOKEN only (never a config file, never logged)."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ValueError("push=true needs a Hub write token in the HF_TOKEN environment variable "
                         "(never in a config file); or use dry_run=true")
    return token


def push(uploads: list[Upload], private: bool, token: str) -> None:
    """create_repo (kept if it exists) + upload_folder for each upload."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    for upload in uploads:
        api.create_repo(upload.repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=upload.repo_id, folder_path=str(upload.folder), repo_type="model",
                          commit_message="Upload model exported by mucode")
        log.info("pushed %s to https://huggingface.co/%s", upload.folder, upload.repo_id)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
