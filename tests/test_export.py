"""Hub export: folders that reload with the Auto classes and behave like the source, model cards that
parse and carry the run's metrics, a dry run that touches no network, a push up to the upload call,
and one-line errors for missing inputs. Tiny models from conftest; the run is built by hand here."""

import json
import re
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from mucode import artifacts
from mucode.config import CONF_DIR
from mucode.export import RunFacts, Source, locate, model_card
from mucode.lm_verifier import SavedHead, VerifierHead, reference_for
from mucode.models import ModelConfig, load_generator, load_verifier
from mucode.report import Summary
from mucode.stages.export import ExportConfig, ExportWhich
from mucode.stages.export import run as export
from mucode.verifier import load_scorer, score

TOKEN = "hf_secret_token_for_tests_0123456789"
SUMMARY = {  # as write_report writes it
    "run_dir": "runs/x",
    "wall_seconds": 812.5,
    "stage_seconds": {"warmup": 100.0, "iter1/sft": 50.0},
    "verifier": {"auc": 0.812, "accuracy": 0.75, "ece": 0.1, "pair_accuracy": 0.7},
    "verifiers": {"iter1": {"auc": 0.812, "accuracy": 0.75, "ece": 0.1}},
    "rollouts": {"iter1": {"episodes": 40, "fix_share": 0.25}},
    "generators": {
        "base": {"greedy": {"accuracy": 0.30, "by_turn": [0.25, 0.30]}, "split": "test", "turns": 2,
                 "candidates": 5, "bon": {s: {"accuracy": a, "by_turn": [a, a]} for s, a in
                                          (("random", 0.3), ("pt", 0.35), ("lv", 0.33), ("pt+lv", 0.4))}},
        "iter1": {"greedy": {"accuracy": 0.42, "by_turn": [0.38, 0.42]}, "split": "test", "turns": 2,
                  "candidates": 5, "bon": {s: {"accuracy": a, "by_turn": [a, a]} for s, a in
                                           (("random", 0.4), ("pt", 0.5), ("lv", 0.45), ("pt+lv", 0.55))}},
    },
}
STAGE_CONFIG = "model:\n  name_or_path: smollm2\ntask:\n  name: mbpp\ntrain:\n  lr: 0.0005\n  max_steps: 170\n"


def _stage(stage_dir, save) -> None:
    """A complete stage folder: model/ written by `save`, config.yaml, manifest.json."""
    save(stage_dir / "model")
    (stage_dir / "config.yaml").write_text(STAGE_CONFIG)
    artifacts.write_manifest(stage_dir, {}, ["model"])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    """A finished run: warm start, iteration 1 (SFT + verifier), summary.json."""
    root = tmp_path_factory.mktemp("run")
    layout = artifacts.RunLayout(root)
    _stage(layout.warmup, lambda p: shutil.copytree(tiny_model_dir, p))
    model, tok = load_generator(ModelConfig(), str(tiny_model_dir))
    with torch.no_grad():
        for p in model.parameters():  # generator 1 differs from the warm start
            p.add_(0.01 * torch.randn_like(p))
    _stage(layout.sft(1), lambda p: (model.save_pretrained(p), tok.save_pretrained(p)))
    verifier, vtok = load_verifier(str(tiny_model_dir))
    _stage(layout.verifier(1), lambda p: (verifier.save_pretrained(p), vtok.save_pretrained(p)))
    (root / "summary.json").write_text(json.dumps(SUMMARY))
    return root


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    result = export(ExportConfig(run_dir=str(run_dir), out_dir=str(out), generator_repo_id="me/mucode-gen",
                                 verifier_repo_id="me/mucode-verifier"))
    return run_dir, result


PROBLEM = "Write a function fold(x) that will add 3 to x, then return the result.\n\nTests:\nassert fold(1) == 4"
CODES = ["def fold(x):\n    return x + 3", "def fold(x):\n    y = x + 3\n    return y", "def fold(x): pass"]


def test_generator_folder_reloads_and_generates_like_the_source(exported):
    run_dir, result = exported
    folder = result.folders["generator"]
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md"} <= names
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert tok.chat_template and model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|end|>")
    source, source_tok = load_generator(ModelConfig(), str(run_dir / "iter1" / "sft" / "model"))
    prompt = tok.apply_chat_template([{"role": "user", "content": PROBLEM}], tokenize=False, add_generation_prompt=True)
    assert prompt == source_tok.apply_chat_template([{"role": "user", "content": PROBLEM}], tokenize=False,
                                                    add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    expected = source.generate(**ids, max_new_tokens=20, do_sample=False, pad_token_id=source_tok.pad_token_id)
    assert torch.equal(out, expected)


def test_verifier_folder_reloads_and_scores_like_the_source(exported):
    run_dir, result = exported
    folder = result.folders["verifier"]
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    source, source_tok = load_verifier(str(run_dir / "iter1" / "verifier" / "model"))
    pairs = [(PROBLEM, c) for c in CODES]
    assert score(model, tok, pairs) == pytest.approx(score(source, source_tok, pairs), abs=1e-5)


def _card(folder):
    card = ModelCard.load(folder / "README.md")
    return card, {r.metric_name: r.metric_value for r in card.data.eval_results or []}


def test_generator_card_parses_and_carries_the_run_metrics(exported):
    run_dir, result = exported
    card, metrics = _card(result.folders["generator"])
    data = card.data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and data.license == "apache-2.0"
    assert data.datasets == ["google-research-datasets/mbpp"] and data.pipeline_tag == "text-generation"
    assert {"mucode", "code-generation", "multi-turn"} <= set(data.tags)
    assert metrics == {"greedy, 2 turns accuracy": 0.42, "BoN@5 random, 2 turns accuracy": 0.4,
                       "BoN@5 pt, 2 turns accuracy": 0.5, "BoN@5 lv, 2 turns accuracy": 0.45,
                       "BoN@5 pt+lv, 2 turns accuracy": 0.55}
    assert {r.dataset_split for r in data.eval_results} == {"test"}
    assert "| iter1 | 42.0 | 38.0 / 42.0 | 40.0 | 50.0 | 45.0 | 55.0 |" in card.text
    assert "max_steps: 170" in card.text and "apply_chat_template" in card.text  # resolved config, usage
    assert "me/mucode-gen" in card.text


def test_verifier_card_parses_and_carries_the_run_metrics(exported):
    _, result = exported
    card, metrics = _card(result.folders["verifier"])
    assert metrics == {"AUC": 0.812, "within-problem pair accuracy": 0.7, "accuracy (score > 0)": 0.75}
    assert {"reward-model", "mucode"} <= set(card.data.tags) and card.data.pipeline_tag == "text-classification"
    assert "AutoModelForSequenceClassification" in card.text and "AUC 0.812" in card.text


def _snippet(folder) -> str:
    code = re.search(r"^```python\n(.*?)^```$", (folder / "README.md").read_text(), re.S | re.M).group(1)
    return re.sub(r'repo = "[^"]*"', f"repo = {str(folder)!r}", code)


def test_card_usage_snippets_run_as_written(exported):
    _, result = exported
    scope: dict = {}
    exec(_snippet(result.folders["verifier"]), scope)
    model = AutoModelForSequenceClassification.from_pretrained(result.folders["verifier"])
    tok = AutoTokenizer.from_pretrained(result.folders["verifier"])
    pairs = [(scope["problem"], c) for c in scope["candidates"]]
    assert scope["scores"].tolist() == pytest.approx(score(model, tok, pairs), abs=1e-5)
    scope = {}
    exec(_snippet(result.folders["generator"]).replace("max_new_tokens=512", "max_new_tokens=8"), scope)
    assert scope["turn"] == 2 and isinstance(scope["code"], str)  # an untrained model fails all 3 turns
    assert scope["messages"][-1]["content"].endswith("Write the whole function in a Python code block.")


def _files(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def test_dry_run_lists_files_sizes_and_repos_and_makes_no_network_call(run_dir, tmp_path, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise AssertionError("network used in a dry run")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(HfApi, "create_repo", refuse)
    monkeypatch.setattr(HfApi, "upload_folder", refuse)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level("INFO")
    result = export(ExportConfig(run_dir=str(run_dir), out_dir=str(tmp_path), push=True, dry_run=True,
                                 generator_repo_id="me/gen", verifier_repo_id="me/ver"))
    assert not result.pushed
    assert [(u.repo_id, u.files) for u in result.uploads] == [("me/gen", _files(tmp_path / "generator")),
                                                              ("me/ver", _files(tmp_path / "verifier"))]
    assert "dry run" in caplog.text and "-> me/gen" in caplog.text and "model.safetensors" in caplog.text
    assert TOKEN not in caplog.text


def test_push_creates_repos_and_uploads_with_the_env_token(run_dir, tmp_path, monkeypatch, caplog, capsys):
    # This fake stands in for the Hub's servers, which cannot be reached here: it records the calls
    # that huggingface_hub's HfApi would send, with the token the client was built with.
    calls = []
    monkeypatch.setattr(HfApi, "create_repo",
                        lambda self, repo_id, **kw: calls.append(("create", self.token, repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder",
                        lambda self, **kw: calls.append(("upload", self.token, kw["repo_id"], kw)))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level("DEBUG")
    result = export(ExportConfig(run_dir=str(run_dir), out_dir=str(tmp_path), which=ExportWhich.generator,
                                 push=True, generator_repo_id="me/gen", private=False))
    assert result.pushed
    assert [(c[0], c[1], c[2]) for c in calls] == [("create", TOKEN, "me/gen"), ("upload", TOKEN, "me/gen")]
    assert calls[0][3]["private"] is False and calls[0][3]["exist_ok"] is True
    assert calls[1][3]["folder_path"] == str(tmp_path / "generator")
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert TOKEN.encode() not in written and TOKEN not in caplog.text + "".join(capsys.readouterr())


def test_push_needs_the_token_and_repo_ids(run_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ValueError, match="HF_TOKEN"):
        export(ExportConfig(run_dir=str(run_dir), out_dir=str(tmp_path / "out"), which=ExportWhich.verifier,
                            push=True, verifier_repo_id="me/ver"))
    assert not (tmp_path / "out").exists()  # checked before any work
    with pytest.raises(ValueError, match="generator_repo_id"):
        ExportConfig(push=True, verifier_repo_id="me/ver")
    with pytest.raises(ValueError, match="verifier_repo_id='bad name'"):
        ExportConfig(verifier_repo_id="bad name")


def test_iteration_choice(run_dir, tmp_path):
    layout = artifacts.RunLayout(run_dir)
    assert locate(layout, "generator", None).stage_dir == layout.sft(1)
    assert locate(layout, "generator", 0).stage_dir == layout.warmup
    assert locate(layout, "generator", None).row == "iter1" and locate(layout, "generator", 0).row == "base"
    verifier = locate(layout, "verifier", None)
    assert verifier.final and verifier.label == "verifier 1" and verifier.stage_dir == layout.verifier(1)
    with pytest.raises(ValueError, match="iteration=0 has no verifier"):
        locate(layout, "verifier", 0)
    with pytest.raises(FileNotFoundError, match=re.escape(str(layout.sft(2) / "model"))):
        locate(layout, "generator", 2)
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "iter1" / "sft" / artifacts.MANIFEST).unlink()  # a half-done stage is never exported
    assert locate(artifacts.RunLayout(copy), "generator", None).stage_dir == copy / "warmup"
    with pytest.raises(ValueError, match="iter1/sft: stage not complete"):
        locate(artifacts.RunLayout(copy), "generator", 1)


def test_missing_summary_or_model_fails_with_the_path(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "iter1" / "verifier" / "model")
    with pytest.raises(FileNotFoundError, match=re.escape(str(copy / "iter1" / "verifier" / "model"))):
        export(ExportConfig(run_dir=str(copy), which=ExportWhich.verifier))
    (copy / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match="summary.json: run summary not found; run the report stage"):
        export(ExportConfig(run_dir=str(copy)))
    assert not (copy / "export").exists()


def test_bad_summary_fails_with_one_line_naming_the_file(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("model"))
    (copy / "summary.json").write_text('{"generators": ')
    with pytest.raises(ValueError, match=f"^{re.escape(str(copy / 'summary.json'))}: not valid JSON"):
        export(ExportConfig(run_dir=str(copy)))


def test_card_renders_from_the_template_with_the_repo_id_and_the_summary_metrics(tmp_path):
    stage = tmp_path / "run" / "iter1" / "sft"
    stage.mkdir(parents=True)
    (stage / "config.yaml").write_text(STAGE_CONFIG)
    facts = RunFacts.read(tmp_path / "run", stage, None)
    summary = Summary.from_json(json.loads(json.dumps(SUMMARY)))
    summary.generators["iter1"].greedy.accuracy = 0.4321
    text = model_card(Source("generator", "generator 1", stage, row="iter1"), facts, summary, "someone/gen-x")
    card = ModelCard(text)
    assert card.data.model_name == "gen-x" and card.data.eval_results[0].metric_value == 0.4321
    assert 'repo = "someone/gen-x"' in card.text and "{{" not in card.text and "@REPO@" not in card.text
    assert "| iter1 | 43.2 | 38.0 / 42.0 | 40.0 | 50.0 | 45.0 | 55.0 |" in card.text
    assert "| base | 30.0 | 25.0 / 30.0 | 30.0 | 35.0 | 33.0 | 40.0 |" in card.text
    assert "AUC 0.812, within-problem pair accuracy 0.700" in card.text
    assert "Wall time of the whole run: 0.23 h." in card.text
    assert "This is generator 1." in card.text and "<code>run/iter1/sft/config.yaml</code>" in card.text
    del summary.generators["iter1"].bon[next(iter(summary.generators["iter1"].bon))]  # no random selector
    base = model_card(Source("generator", "generator 0", stage, row="base"), facts, summary, None)
    assert 'repo = "<user>/mucode-run-generator"' in base and "The warm start (generator 0)" in base
    assert "| iter1 | 43.2 | 38.0 / 42.0 | \u2014 | 50.0 |" in base
    verifier = ModelCard(model_card(Source("verifier", "final verifier", stage, final=True), facts, summary, "a/v"))
    assert verifier.text.startswith("\n# v\n\nFinal verifier of the μCode run `run`")
    assert "This verifier on held-out problems: AUC 0.812" in verifier.text and 'repo = "a/v"' in verifier.text
    assert [r.metric_value for r in verifier.data.eval_results] == [0.812, 0.7, 0.75]


def test_entry_point_missing_summary_exits_2_with_one_line(tmp_path):
    cmd = [sys.executable, str(CONF_DIR.parent / "pipelines" / "export.py"), f"run_dir={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    summary = tmp_path / "summary.json"
    assert lines[0] == f"error: {summary}: run summary not found; run the report stage first or point to it"


@pytest.mark.parametrize("base, base_model, license", [
    ("tiny", None, "apache-2.0"),
    ("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
    ("meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-1B-Instruct", "other"),
    ("/models/local-copy", None, "other"),
])
def test_card_facts_from_the_resolved_config(tmp_path, base, base_model, license):
    stage = tmp_path / "run" / "iter1" / "sft"
    stage.mkdir(parents=True)
    (stage / "config.yaml").write_text(f"model:\n  name_or_path: {base}\ntask:\n  name: humaneval\n")
    facts = RunFacts.read(tmp_path / "run", stage, None)
    assert (facts.base_model, facts.license, facts.task) == (base_model, license, "humaneval")
    assert list(facts.configs) == ["run/iter1/sft/config.yaml"]
    assert RunFacts.read(tmp_path / "run", stage, "llama3.2").license == "llama3.2"


@pytest.fixture(scope="module", params=["ratio", "likelihood", "loglik"])
def lm_exported(request, run_dir, tmp_path_factory):
    """The run with an LM-head verifier (generator 1's weights; ratio: against the warm start), exported."""
    root = tmp_path_factory.mktemp("lm-run") / "run"
    shutil.copytree(run_dir, root, ignore=shutil.ignore_patterns("export"))
    layout = artifacts.RunLayout(root)
    folder = layout.model(layout.verifier(1))
    shutil.rmtree(folder)
    shutil.copytree(layout.model(layout.sft(1)), folder)
    head = VerifierHead(request.param)
    reference = reference_for(str(layout.model(layout.warmup)), folder) if head is VerifierHead.ratio else None
    SavedHead(head, 0.1, reference).write(folder)
    out = tmp_path_factory.mktemp("lm-export")
    return root, export(ExportConfig(run_dir=str(root), out_dir=str(out), which=ExportWhich.verifier,
                                     verifier_repo_id="me/mucode-verifier"))


def test_lm_verifier_exports_as_a_causal_lm_whose_card_snippet_gives_the_scorer_scores(lm_exported):
    root, result = lm_exported
    folder = result.folders["verifier"]
    saved = SavedHead.read(folder)
    AutoModelForCausalLM.from_pretrained(folder)
    if saved.head is VerifierHead.ratio:  # the reference travels with it
        assert saved.reference == "reference" and (folder / "reference" / "model.safetensors").is_file()
    card, _ = _card(folder)
    assert card.data.pipeline_tag == "text-generation" and "AutoModelForCausalLM" in card.text
    assert "AutoModelForSequenceClassification" not in card.text
    scope: dict = {}
    exec(_snippet(folder), scope)
    pairs = [(scope["problem"], c) for c in scope["candidates"]]
    exported = load_scorer(folder, ModelConfig())(pairs)
    assert scope["scores"].tolist() == pytest.approx(exported, abs=1e-4)
    source = artifacts.RunLayout(root).model(artifacts.RunLayout(root).verifier(1))
    assert load_scorer(source, ModelConfig())(pairs) == pytest.approx(exported, abs=1e-5)
    assert saved.head is VerifierHead.likelihood or any(abs(s) > 1e-4 for s in exported)  # theta != reference
