"""Hub-ready export of a run's generator and verifier, with model cards; optional push to the Hub.

    python pipelines/export.py run_dir=runs/default                        # folders in runs/default/export
    python pipelines/export.py run_dir=runs/x which=generator iteration=2 \
        generator_repo_id=me/mucode-gen push=true dry_run=true              # list what would be uploaded
    HF_TOKEN=hf_... python pipelines/export.py run_dir=runs/x push=true \
        generator_repo_id=me/mucode-gen verifier_repo_id=me/mucode-verifier

What is exported (RunLayout): generator i is `iter{i}/sft/model` (0: the warm start `warmup/model`);
the verifier is `final_verifier/model` or `iter{i}/verifier/model`. `iteration=null` takes the last
complete one of each. Every source stage must be complete (its manifest says so) and the run's
`summary.json` (the report stage) must exist: its metrics go into the cards.

Each folder (`out_dir/generator`, `out_dir/verifier`, written atomically) is a `save_pretrained`
folder (safetensors) that loads with the Auto classes: the generator with AutoModelForCausalLM, its
tokenizer with the chat template and a generation_config whose eos is the end-of-turn token; the
verifier with AutoModelForSequenceClassification (num_labels=1, score at the last non-pad token).
README.md is the model card: YAML metadata (base_model, datasets, tags, license, model-index from
summary.json), results, a usage snippet, the training recipe and the resolved stage config.

Push: huggingface_hub `create_repo` + `upload_folder`, with the token from $HF_TOKEN only (never
from a config file, never logged). `dry_run=true` builds the folders and lists the files, sizes and
target repos without touching the network.

Limits: the model is loaded and saved again (normalising to safetensors), so export needs the
model's size in CPU memory; metadata knows the Hub ids of SmolLM2, MBPP and HumanEval, and any base
given as a Hub id; for other bases set `license`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from mucode import artifacts
from mucode.artifacts import RunLayout
from mucode.models import SMOLLM2, TINY
from mucode.prompts import INSTRUCTION, RETRY

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
FINAL_VERIFIER = "final_verifier"
BASE_MODEL_IDS = {SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct"}
DATASETS = {  # task name -> (Hub dataset id or None, display name)
    "embedded": (None, "mucode embedded suite"),
    "mbpp": ("google-research-datasets/mbpp", "MBPP"),
    "humaneval": ("openai/openai_humaneval", "HumanEval"),
    "jsonl": (None, "custom problems"),
}
OPEN_LICENSED = (TINY, SMOLLM2)  # the tiny model (trained here) and SmolLM2 are Apache-2.0
SELECTORS = ("random", "pt", "lv", "pt+lv")


class ExportWhich(str, Enum):
    """Which models to export."""

    generator = "generator"
    verifier = "verifier"
    both = "both"


@dataclass
class ExportConfig:
    """The export stage: Hub-ready folders with model cards for a run's generator and/or verifier."""

    run_dir: str = "runs/default"
    """The run to export (needs summary.json from the report stage)."""
    which: ExportWhich = ExportWhich.both
    """generator, verifier or both."""
    iteration: Optional[int] = None
    """Iteration to export (0 = the warm-start generator); null = the last complete one of each."""
    out_dir: str = "${run_dir}/export"
    """Where the folders generator/ and verifier/ are written."""
    generator_repo_id: Optional[str] = None
    """Hub repo for the generator ("user/name"); needed to push it."""
    verifier_repo_id: Optional[str] = None
    """Hub repo for the verifier; needed to push it."""
    license: Optional[str] = None
    """License in the cards; null = apache-2.0 for the tiny/SmolLM2 bases, "other" otherwise."""
    push: bool = False
    """Upload the folders to the Hub (token from $HF_TOKEN)."""
    dry_run: bool = False
    """List what would be uploaded (files, sizes, repos) and upload nothing."""
    private: bool = True
    """Create the Hub repos private."""

    def __post_init__(self) -> None:
        from huggingface_hub.utils import validate_repo_id

        if self.which not in {w.value for w in ExportWhich}:
            raise ValueError(f"which={self.which!r}; choose generator, verifier or both")
        self.which = ExportWhich(self.which)
        if self.iteration is not None and self.iteration < 0:
            raise ValueError(f"iteration={self.iteration} must be >= 0 (or null for the last)")
        for kind in self.kinds():
            repo_id = self.repo_id(kind)
            if repo_id is None and self.push:
                raise ValueError(f"push=true needs {kind}_repo_id (e.g. {kind}_repo_id=user/mucode-{kind})")
            try:
                if repo_id is not None:
                    validate_repo_id(repo_id)
            except ValueError as e:
                raise ValueError(f"{kind}_repo_id={repo_id!r}: {e}") from None

    def kinds(self) -> list[str]:
        return ["generator", "verifier"] if self.which is ExportWhich.both else [self.which.value]

    def repo_id(self, kind: str) -> str | None:
        return self.generator_repo_id if kind == "generator" else self.verifier_repo_id


@dataclass
class Source:
    """One model to export: its folder, its stage and where its metrics sit in summary.json."""

    kind: str
    """generator or verifier."""
    label: str
    """Human name: "generator 2", "final verifier"."""
    stage_dir: Path
    summary_key: str | None
    """generators.<key> for a generator; "verifier" when summary.json's verifier metrics are its own."""

    @property
    def model_dir(self) -> Path:
        return self.stage_dir / "model"


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


@dataclass
class ExportResult:
    """What export() wrote and sent."""

    folders: dict[str, Path]
    """kind -> exported folder."""
    uploads: list[Upload]
    """What was (push) or would be (dry_run) uploaded."""
    pushed: bool


def export(config: ExportConfig) -> ExportResult:
    """Write the Hub-ready folders with their cards; push them, or list the upload when dry_run."""
    token = hub_token() if config.push and not config.dry_run else None  # fail before any work
    layout = RunLayout(Path(config.run_dir))
    summary = read_summary(layout.root)
    sources = [locate(layout, kind, config.iteration) for kind in config.kinds()]  # all checked first
    folders = {}
    for source in sources:
        folders[source.kind] = folder = Path(config.out_dir) / source.kind
        facts = RunFacts.read(layout.root, source.stage_dir, config.license)
        with artifacts.atomic_dir(folder) as tmp:
            (save_generator if source.kind == "generator" else save_verifier)(source.model_dir, tmp)
            card = model_card(source, facts, summary, config.repo_id(source.kind))
            (tmp / "README.md").write_text(card, encoding="utf-8")
        log.info("exported %s (%s) to %s", source.label, source.model_dir, folder)
    uploads = [upload_plan(folders[s.kind], config.repo_id(s.kind)) for s in sources]
    if config.push and not config.dry_run:
        push(uploads, config.private, token)
        return ExportResult(folders, uploads, pushed=True)
    log.info("dry run, nothing uploaded; push would send:" if config.dry_run else "ready to push (push=true):")
    for line in (ln for u in uploads for ln in u.describe()):
        log.info("%s", line)
    return ExportResult(folders, uploads, pushed=False)


def read_summary(run_dir: Path) -> dict:
    """The run's summary.json (written by the report stage)."""
    path = artifacts.require(run_dir / SUMMARY, "run summary", "the report stage")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); rerun the report stage") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: expected a JSON object; rerun the report stage")
    return summary


def locate(layout: RunLayout, kind: str, iteration: int | None) -> Source:
    """The complete stage holding the generator/verifier of `iteration` (None: the last one)."""
    if kind == "generator":
        done = [i for i in _iterations(layout) if _complete(layout.sft(i))]
        if iteration is None:
            iteration = max(done, default=0)
        stage = layout.sft(iteration) if iteration else layout.warmup
        key = f"iter{iteration}" if iteration else "base"
        return Source(kind, f"generator {iteration}", _checked(stage), key)
    last = _last_verifier(layout)
    if iteration == 0:
        raise ValueError("iteration=0 has no verifier (the first is trained in iteration 1); use which=generator")
    stage = last if iteration is None else layout.verifier(iteration)
    label = "final verifier" if stage.name == FINAL_VERIFIER else f"verifier {stage.parent.name[4:]}"
    return Source(kind, label, _checked(stage), "verifier" if stage == last else None)


def _iterations(layout: RunLayout) -> list[int]:
    names = (p.name for p in layout.root.glob("iter*") if p.is_dir())
    return sorted(int(n[4:]) for n in names if n[4:].isdigit())


def _complete(stage: Path) -> bool:
    return artifacts.read_manifest(stage) is not None


def _last_verifier(layout: RunLayout) -> Path:
    """final_verifier when complete, else the last complete iteration's verifier, else final_verifier."""
    final = layout.root / FINAL_VERIFIER
    done = [i for i in _iterations(layout) if _complete(layout.verifier(i))]
    return final if _complete(final) or not done else layout.verifier(max(done))


def _checked(stage: Path) -> Path:
    artifacts.require(stage / "model", "model folder", f"the stage that writes {stage}")
    if not _complete(stage):
        raise ValueError(f"{stage}: stage not complete (no complete manifest.json); rerun it before exporting")
    return stage


def save_generator(source: Path, out: Path) -> None:
    """Generator + tokenizer (with chat template) as safetensors; generation stops at end of turn."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    end_of_turn = _end_of_turn(tok, source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
    gen = model.generation_config
    others = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    eos = [end_of_turn, *(i for i in others if i is not None and i != end_of_turn)]
    gen.eos_token_id = eos[0] if len(eos) == 1 else eos
    gen.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else end_of_turn
    gen.bos_token_id = tok.bos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _end_of_turn(tok, source: Path) -> int:
    """The tokenizer's eos, checked to be the token the chat template ends an assistant turn with."""
    if not tok.chat_template:
        raise ValueError(f"{source}: tokenizer has no chat template; the exported generator needs one")
    user = [{"role": "user", "content": "x"}]
    prompt = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template([*user, {"role": "assistant", "content": "y"}], tokenize=False)
    tail = tok(full[len(prompt):] if full.startswith(prompt) else full, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is None or tok.eos_token_id not in tail:
        raise ValueError(f"{source}: the chat template does not end the assistant turn with eos "
                         f"{tok.eos_token!r}; generation would not stop at the end of a turn")
    return tok.eos_token_id


def save_verifier(source: Path, out: Path) -> None:
    """Verifier (scalar head, num_labels=1) + tokenizer with a pad token, as safetensors."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    archs = AutoConfig.from_pretrained(source).architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ValueError(f"{source}: not a verifier (architectures {archs}); "
                         "expected a *ForSequenceClassification folder")
    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype="auto")
    model.config.pad_token_id = tok.pad_token_id  # the score is read at the last non-pad token
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
                   for p in (stage_dir / "config.yaml", run_dir / "config.yaml") if p.is_file()}
        if not configs:
            raise FileNotFoundError(f"{stage_dir / 'config.yaml'}: resolved config not found; the card needs it")
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


def model_card(source: Source, facts: RunFacts, summary: dict, repo_id: str | None) -> str:
    """README.md text: YAML metadata (parsed by huggingface_hub.ModelCard) + the body."""
    from huggingface_hub import ModelCardData

    generator = source.kind == "generator"
    name = repo_id.split("/")[-1] if repo_id else f"mucode-{facts.run_name}-{source.kind}"
    hub_id, dataset = DATASETS.get(facts.task or "", (None, facts.task or "unknown task"))
    tags = ["mucode", "code-generation", "multi-turn"]
    tags += ["expert-iteration"] if generator else ["reward-model", "verifier"]
    results = eval_results(source, summary, hub_id or f"mucode/{facts.task}", dataset)
    data = ModelCardData(
        model_name=name, base_model=facts.base_model, datasets=[hub_id] if hub_id else None,
        license=facts.license, library_name="transformers", tags=tags, eval_results=results or None,
        pipeline_tag="text-generation" if generator else "text-classification",
    )
    usage = (GENERATOR_USAGE if generator else VERIFIER_USAGE).replace("@REPO@", repo_id or f"<user>/{name}")
    sections = [
        f"# {name}\n\n{_intro(source, facts, dataset)}",
        f"## Results\n\n{results_text(source, summary, dataset)}",
        f"## Usage\n\n{usage}",
        f"## Training\n\n{_recipe(source)}\n\n{_configs_text(facts.configs)}",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def eval_results(source: Source, summary: dict, dataset_type: str, dataset_name: str) -> list:
    """model-index entries for this model's own metrics in summary.json (none if it has none)."""
    from huggingface_hub import EvalResult

    if source.kind == "verifier":
        metrics = summary.get("verifier", {}) if source.summary_key else {}
        common = dict(task_type="text-classification", task_name="Code correctness verification",
                      dataset_type=dataset_type, dataset_name=dataset_name, dataset_split="valid")
        return [EvalResult(**common, metric_type=kind, metric_value=metrics[key], metric_name=name)
                for key, kind, name in (("auc", "roc_auc", "AUC"), ("accuracy", "accuracy", "accuracy (score > 0)"))
                if finite(metrics.get(key))]
    row = summary.get("generators", {}).get(source.summary_key)
    if row is None:
        log.warning("summary.json has no generators.%s; the card carries no metrics for %s",
                    source.summary_key, source.label)
        return []
    common = dict(task_type="text-generation", task_name="Multi-turn code generation",
                  dataset_type=dataset_type, dataset_name=dataset_name, dataset_split=_split(summary))
    turns, n = row.get("turns", "T"), row.get("candidates", "N")
    pairs = [(f"greedy, {turns} turns", _accuracy(row.get("greedy")))]
    pairs += [(f"BoN@{n} {sel}, {turns} turns", _accuracy(row.get("bon", {}).get(sel))) for sel in SELECTORS]
    return [EvalResult(**common, metric_type="accuracy", metric_value=v, metric_name=f"{what} accuracy")
            for what, v in pairs if finite(v)]


def _split(summary: dict) -> str:
    """The evaluation split: as the eval stage recorded it, else test."""
    rows = [g for g in summary.get("generators", {}).values() if isinstance(g, dict) and g.get("split")]
    return str(rows[-1]["split"]) if rows else "test"


def _accuracy(entry: Any) -> Any:
    return entry.get("accuracy") if isinstance(entry, dict) else entry


def results_text(source: Source, summary: dict, dataset: str) -> str:
    """The run's results from summary.json as Markdown: every generator, then the verifier."""
    lines = [f"From the run's `summary.json`: accuracy (%) on {dataset} ({_split(summary)} split). "
             "Greedy: one sample per turn at temperature 0; BoN: multi-turn Best-of-N, picking each turn's "
             "candidate with a selector (random; pt = passes the public tests; lv = learned verifier; "
             "pt+lv = public tests first, then the verifier). "
             + (f"This model is row `{source.summary_key}`." if source.kind == "generator" else ""),
             "", "| generator | greedy | greedy by turn | " + " | ".join(f"BoN {s}" for s in SELECTORS) + " |",
             "|---|---|---|" + "---|" * len(SELECTORS)]
    for key, row in summary.get("generators", {}).items():
        greedy = row.get("greedy") or {}
        by_turn = " / ".join(_pct(v) for v in greedy.get("by_turn", [])) or "-"
        bons = [_pct(_accuracy(row.get("bon", {}).get(s))) for s in SELECTORS]
        lines.append(f"| {key} | {_pct(_accuracy(greedy))} | {by_turn} | " + " | ".join(bons) + " |")
    verifier = summary.get("verifier", {})
    whose = "This" if source.kind == "verifier" and source.summary_key else "The run's last"
    lines += ["", f"{whose} verifier on held-out problems: AUC {_num(verifier.get('auc'))}, "
              f"accuracy {_pct(verifier.get('accuracy'))}."]
    if finite(summary.get("wall_seconds")):
        lines.append(f"Wall time of the whole run: {summary['wall_seconds'] / 3600:.2f} h.")
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if finite(v) else "-"


def _num(v: Any) -> str:
    return f"{v:.3f}" if finite(v) else "-"


def _intro(source: Source, facts: RunFacts, dataset: str) -> str:
    what = ("a code generator that fixes its own code over several turns, using the public-test feedback"
            if source.kind == "generator" else
            "a learned verifier: it scores how likely a candidate program is to pass all tests")
    base = f"`{facts.base_model or facts.base}`" if facts.base else "the run's base model"
    return (f"{source.label.capitalize()} of the μCode run `{facts.run_name}`: {what}. Trained with mucode by expert "
            "iteration with a learned verifier (μCode: Jain et al., *Multi-Turn Code Generation Through "
            f"Single-Step Rewards*, ICML 2025, [arXiv:2502.20380](https://arxiv.org/abs/2502.20380)) "
            f"from {base} on {dataset}.")


def _recipe(source: Source) -> str:
    if source.kind == "verifier":
        return ("The base model with a fresh scalar head (AutoModelForSequenceClassification, num_labels=1), "
                "trained on every (problem, code) pair of the rollouts collected so far, labeled by the oracle "
                "(positive iff the code passes the public and private tests), with a pointwise BCE or a "
                "Bradley-Terry pairwise loss (see the config). Input: the problem statement with its public "
                "tests as a user turn and the code as an assistant turn, in the chat template; the score is "
                "the logit at the last non-pad token. It picks among candidates at inference (Best-of-N) and "
                "ranks the codes the expert relabels with.")
    if source.summary_key == "base":
        return ("The warm start (generator 0): supervised fine-tuning of the base model on reference solutions, "
                "single turn; expert iteration starts from it.")
    return ("One μCode iteration i: (1) collect K multi-turn rollouts per training problem with generator "
            "i-1 (stop when the public tests pass, at most T turns); (2) train the verifier on all rollouts "
            "so far; (3) relabel with the local-search expert: each problem's best final code (correct "
            "first, the verifier breaking ties) becomes the target of every state of the selected failed "
            "episodes, and successful episodes keep their own code; (4) fine-tune the base model on all "
            f"relabeled states so far, loss on the final assistant turn only. This is {source.label}.")


def _configs_text(configs: dict[str, str]) -> str:
    return "\n\n".join(f"<details><summary>Resolved config: <code>{name}</code></summary>\n\n"
                       f"```yaml\n{text.rstrip()}\n```\n\n</details>" for name, text in configs.items())


GENERATOR_USAGE = """Multi-turn generation with the chat template; feedback from mucode's sandbox (the format this
model was trained on; run untrusted code only in a sandbox). Generation stops at the end-of-turn token
(`generation_config.eos_token_id`).

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from mucode.prompts import extract_code
from mucode.sandbox import run as run_tests

repo = "@REPO@"
tok = AutoTokenizer.from_pretrained(repo)
model = AutoModelForCausalLM.from_pretrained(repo)

statement = "Write a function add(a, b) that returns the sum of a and b."
public_tests = ["assert add(1, 2) == 3"]
messages = [{"role": "user", "content": statement + "\\n\\nTests:\\n" + "\\n".join(public_tests)
             + "\\n\\n@INSTRUCTION@"}]
for turn in range(3):
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**inputs, max_new_tokens=512, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    code = extract_code(answer, "add")
    result = run_tests(code, public_tests)
    if result.passed:
        break
    messages += [{"role": "assistant", "content": f"```python\\n{code}\\n```"},
                 {"role": "user", "content": f"{result.feedback.rstrip()}\\n\\n@RETRY@"}]
print(code)
```""".replace("@INSTRUCTION@", INSTRUCTION).replace("@RETRY@", RETRY)

VERIFIER_USAGE = """Score candidate programs for a problem (higher: more likely to pass all tests) and keep the best.
The input is the problem as the generator sees it at turn 1 (statement and public tests) as a user
turn and the code as an assistant turn.

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

repo = "@REPO@"
tok = AutoTokenizer.from_pretrained(repo)
model = AutoModelForSequenceClassification.from_pretrained(repo).eval()

problem = "Write a function add(a, b) that returns the sum of a and b.\\n\\nTests:\\nassert add(1, 2) == 3"
candidates = ["def add(a, b):\\n    return a + b", "def add(a, b):\\n    return a - b"]
texts = [tok.apply_chat_template([{"role": "user", "content": problem},
                                  {"role": "assistant", "content": f"```python\\n{code}\\n```"}], tokenize=False)
         for code in candidates]
inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
with torch.no_grad():
    scores = model(**inputs).logits[:, 0]
best = candidates[int(scores.argmax())]
```"""


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


def finite(value: Any) -> bool:
    """A metric worth printing: a real number that is not NaN or infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
