"""The experiment presets (conf/experiment/): the paper's recipe resolves to the paper's numbers (Table 6 and the
reference code's values as ../shared/research/mucode.md reports them, written out here rather than read from the
YAML), every preset builds its typed config, the 8B and SmolLM2 presets keep the 1B protocol, and the Slurm
submitter can write every stage of a preset's plan as overrides."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from mucode import artifacts, slurm
from mucode.config import CONF_DIR, check_overrides, compose
from mucode.stages.expert_iteration import ExpertIterationConfig, plan
from mucode.training import deepspeed_config
from mucode.training.config import Precision, deepspeed_file

ROOT = CONF_DIR.parent
PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))

# The paper's Llama-3.2-1B-Instruct recipe on MBPP, field by field (source in mucode.md).
PAPER_1B = {
    "model.name_or_path": "meta-llama/Llama-3.2-1B-Instruct", "model.dtype": "bfloat16",
    "task.name": "mbpp", "task.path": None,                   # MBPP train -> MBPP test + HumanEval (Table 1)
    "eval.tasks": ["mbpp", "humaneval"],
    "iterations": 2, "final_rollouts": True,                  # M=2; RM2 trained on generator 2's rollouts too
    "rollout.samples": 15, "rollout.turns": 3,                # K=15, T=3 (mucode.sh:L5-L6)
    "rollout.problems_per_iteration": None,                   # all 374 train problems each iteration
    "rollout.sampling.temperature": 0.7, "rollout.sampling.top_p": 1.0,
    "rollout.sampling.max_new_tokens": 1000,                  # 1000 tokens per turn (paper C.0.2)
    "sandbox.timeout_s": 10.0,                                # utils.py:L9
    "verifier.head": "scalar",                                # the paper's fresh scalar head
    "verifier.loss": "bt", "verifier.pairs_per_problem": 32, "verifier.l2": 1e-3, "verifier.valid_fraction": 0.0,
    "verifier.train.lr": 1e-6, "verifier.train.epochs": 2.0, "verifier.train.max_steps": 0,   # Table 6
    "verifier.train.max_length": 2048, "verifier.train.batch_tokens": 0,                       # Table 6
    "verifier.train.schedule": "linear", "verifier.train.warmup_steps": 0, "verifier.train.min_lr_ratio": 0.5,
    "verifier.train.eps": 1e-5, "verifier.train.beta1": 0.9, "verifier.train.beta2": 0.999,
    "verifier.train.weight_decay": 0.01, "verifier.train.precision": "bf16", "verifier.train.deepspeed": None,
    "relabel.mode": "both", "relabel.beta_oracle": 1.0, "relabel.beta_learned": 0.1, "relabel.relabel_failed": 3,
    "sft.init": "generator0", "sft.replay": 0.0,
    "sft.train.lr": 5e-7, "sft.train.epochs": 2.0, "sft.train.max_steps": 0,                  # Table 6
    "sft.train.max_length": 4096, "sft.train.batch_tokens": 0,                                 # Table 6
    "sft.train.schedule": "linear", "sft.train.warmup_steps": 0, "sft.train.min_lr_ratio": 0.0,
    "sft.train.eps": 1e-8, "sft.train.beta1": 0.9, "sft.train.beta2": 0.999, "sft.train.weight_decay": 0.0,
    "sft.train.grad_clip": 1.0, "sft.train.precision": "bf16", "sft.train.deepspeed": None,
    "eval.split": "test", "eval.limit": None,                 # every test problem
    "eval.search.searches": 10, "eval.search.candidates": 5, "eval.search.turns": 3,        # S=10, N=5, T=3
    "eval.search.sampling.temperature": 0.7, "eval.search.sampling.top_p": 1.0,
    "eval.search.sampling.max_new_tokens": 1000,
}
GENERATOR_BATCH, VERIFIER_BATCH = 32, 64  # Table 6: examples / pairs per optimizer step
# What the other presets may change; everything else is the 1B protocol.
SIZING = {"verifier.train.batch_size", "verifier.train.grad_accum", "sft.train.batch_size", "sft.train.grad_accum"}


def _values(config: ExpertIterationConfig) -> dict:
    return artifacts.leaves(artifacts.config_values(config))


def _batches(values: dict, processes: int) -> tuple[int, int]:
    """(generator, verifier) examples per optimizer step with `processes` training processes."""
    return tuple(values[f"{r}.train.batch_size"] * values[f"{r}.train.grad_accum"] * processes
                 for r in ("sft", "verifier"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_its_typed_config(preset):
    config = compose("expert_iteration", [f"experiment={preset}"])  # __post_init__ checks of every dataclass ran
    assert isinstance(config, ExpertIterationConfig)
    values = _values(config)
    assert values["task.name"] == "mbpp" and values["eval.tasks"] == ["mbpp", "humaneval"]
    assert values["model.name_or_path"] not in ("tiny", "smollm2")
    assert plan(config)[-1].stage == "report"


def test_paper_preset_resolves_to_the_papers_values():
    values = _values(compose("expert_iteration", ["experiment=llama1b_mbpp"]))
    assert {k: values[k] for k in PAPER_1B} == PAPER_1B
    assert _batches(values, processes=1) == (GENERATOR_BATCH, VERIFIER_BATCH)


def test_paper_preset_cfg_job_from_another_directory(tmp_path):
    """`pipelines/expert_iteration.py experiment=llama1b_mbpp --cfg job` as a user runs it, outside the checkout."""
    out = subprocess.run([sys.executable, str(ROOT / "pipelines" / "expert_iteration.py"), "experiment=llama1b_mbpp",
                          "--cfg", "job"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    values = artifacts.leaves(OmegaConf.to_container(OmegaConf.create(out.stdout)))
    assert {k: values[k] for k in PAPER_1B} == PAPER_1B


def test_8b_preset_is_the_1b_protocol_under_zero3_on_4_processes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # conf/deepspeed/zero3.json is found from any working directory
    config = compose("expert_iteration", ["experiment=llama8b_mbpp"])
    values, paper = _values(config), _values(compose("expert_iteration", ["experiment=llama1b_mbpp"]))
    changed = {k for k in paper if values[k] != paper[k]}
    assert changed - SIZING == {"model.name_or_path", "sft.train.deepspeed", "verifier.train.deepspeed"}
    assert values["model.name_or_path"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert _batches(values, processes=4) == (GENERATOR_BATCH, VERIFIER_BATCH)  # the paper's 4 x H100
    for train in (config.sft.train, config.verifier.train):
        assert deepspeed_file(train.deepspeed) == ROOT / "conf" / "deepspeed" / "zero3.json"
        assert deepspeed_config(train, Precision.bf16)["zero_optimization"]["stage"] == 3


def test_smollm2_preset_is_the_1b_protocol_with_scaled_learning_rates():
    values = _values(compose("expert_iteration", ["experiment=smollm2_mbpp"]))
    paper = _values(compose("expert_iteration", ["experiment=llama1b_mbpp"]))
    changed = {k for k in paper if values[k] != paper[k]}
    assert changed - SIZING == {"model.name_or_path", "sft.train.lr", "verifier.train.lr", "verifier.valid_fraction"}
    assert values["model.name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert _batches(values, processes=1) == (GENERATOR_BATCH, VERIFIER_BATCH)  # one GPU
    # Table 6's rates times Llama-3.2-1B's width over SmolLM2-135M's (2048 / 576 = 3.6), rounded; ratio kept.
    assert values["sft.train.lr"] == 2e-6 and values["verifier.train.lr"] == 4e-6


def test_command_line_overrides_still_win_over_a_preset():
    config = compose("expert_iteration", ["experiment=llama1b_mbpp", "task.path=/data/mbpp.jsonl", "rollout.samples=4"])
    assert config.task.path == "/data/mbpp.jsonl" and config.rollout.samples == 4


def test_unknown_preset_is_one_line_naming_the_presets(capsys):
    with pytest.raises(SystemExit) as e:
        check_overrides("expert_iteration", ["experiment=nope"])  # the main job's first step, before Hydra's
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err
    assert "experiment/nope" in err and all(p in err for p in PRESETS)


def test_slurm_submitter_writes_every_stage_of_a_preset_as_overrides():
    """What `python -m mucode.slurm experiment=llama8b_mbpp` does per step: each stage's config written as
    overrides of conf/<stage>.yaml that compose back to exactly that config."""
    for step in plan(check_overrides("expert_iteration", ["experiment=llama8b_mbpp", "run_dir=runs/x"])):
        args = slurm.overrides(step.stage, step.config)
        if step.stage == "train_generator":
            assert "sft.train.deepspeed=conf/deepspeed/zero3.json" in args and "sft.train.lr=5e-07" in args
