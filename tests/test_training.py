"""The training loop: schedule and batch plan (pure), a short run, precision, gradient accumulation,
and a real kill (SIGKILL) mid-stage followed by a resume that matches an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mucode import sft
from mucode.models import load_generator, ModelConfig
from mucode.records import SFTExample
from mucode.tracking import METRICS_FILE, TrackingConfig, WandbMode, open_logger
from mucode.training import (
    CHECKPOINTS, Precision, Schedule, TrainConfig, lr_factor, padding_waste, plan_batches, process_state,
    total_steps, train,
)

ROOT = Path(__file__).resolve().parents[1]


def examples(n: int = 16) -> list[SFTExample]:
    """Hand-built SFT rows of varied lengths."""
    rows = []
    for i in range(n):
        words = " then add 1" * (i % 4)
        messages = [{"role": "user", "content": f"Write a function fold(x) that will add {i}{words}."}]
        rows.append(SFTExample(f"p{i}", messages, f"def fold(x):\n    return x + {i}"))
    return rows


def run_training(model_dir: Path, out_dir: Path, config: TrainConfig, loss_fn=sft.sft_loss, n: int = 16):
    """Train the saved tiny model on `examples(n)`; returns (result, trained model)."""
    model, tok = load_generator(ModelConfig(), str(model_dir))
    items, _ = sft.tokenize_all(tok, examples(n), config.max_length)
    tracking = TrackingConfig(wandb=WandbMode.disabled)
    with open_logger(tracking, out_dir, "test", main_process=process_state(config).is_main_process) as logger:
        result = train(model, items, [len(t.input_ids) for t in items], lambda b: sft.collate(b, tok.pad_token_id),
                       loss_fn, config, out_dir, logger, tok)
    return result, model


def small(**overrides) -> TrainConfig:
    values = dict(lr=1e-2, max_steps=3, epochs=0.0, batch_size=4, batch_tokens=0, max_length=256, warmup_steps=1,
                  log_every=1, precision=Precision.fp32, checkpoint_every=0)
    return TrainConfig(**{**values, **overrides})


# --- pure pieces ---------------------------------------------------------------------------------

def test_lr_factor_warmup_then_each_schedule():
    cosine = TrainConfig(warmup_steps=2, min_lr_ratio=0.1, schedule=Schedule.cosine)
    assert [lr_factor(s, 12, cosine) for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, 12, cosine) == pytest.approx(1.0)
    assert lr_factor(7, 12, cosine) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert lr_factor(12, 12, cosine) == pytest.approx(0.1)
    linear = TrainConfig(warmup_steps=0, min_lr_ratio=0.0, schedule=Schedule.linear)
    assert [lr_factor(s, 4, linear) for s in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert lr_factor(3, 4, TrainConfig(warmup_steps=0, schedule=Schedule.constant)) == 1.0


def test_plan_is_deterministic_covers_every_example_once_and_respects_the_budget():
    rng = random.Random(0)
    lengths = [rng.randint(20, 160) for _ in range(3000)]
    for window in (0, 50):  # random batches (the iteration SFT and verifier), length buckets (the warm start)
        config = TrainConfig(batch_tokens=1024, max_length=512, sort_window=window)
        plan = plan_batches(lengths, config, epoch=0)
        assert plan == plan_batches(lengths, config, epoch=0)
        assert plan != plan_batches(lengths, config, epoch=1)
        assert sorted(i for b in plan for i in b) == list(range(3000))
        assert all(len(b) * max(lengths[i] for i in b) <= 1024 for b in plan)
        if window:
            assert padding_waste(plan, lengths) < 0.03  # bucketed
        else:
            assert padding_waste(plan, lengths) > 0.2  # what bucketing saves
            assert sum(len(b) for b in plan) / len(plan) > 6  # still packed up to the budget
    capped = plan_batches(lengths, TrainConfig(batch_size=5, batch_tokens=0, max_length=512), 0)
    assert {len(b) for b in capped[:-1]} <= {5} and len(capped) >= 600


def test_total_steps_from_epochs_and_max_steps():
    lengths = [10] * 40
    config = TrainConfig(batch_size=4, batch_tokens=0, max_steps=0, epochs=2.5, grad_accum=2)
    assert total_steps(lengths, config, world_size=1) == 13  # 10 micro-batches -> 5 steps per epoch
    assert total_steps(lengths, TrainConfig(batch_size=4, batch_tokens=0, max_steps=7, epochs=2.5), 1) == 7
    with pytest.raises(ValueError, match="fewer micro-batches"):
        total_steps([10] * 3, TrainConfig(batch_size=4, batch_tokens=0, grad_accum=2), 1)


@pytest.mark.parametrize("bad, match", [
    (dict(schedule="cos"), "train.schedule='cos'; choose one of cosine"),
    (dict(precision="fp16"), "train.precision"),
    (dict(max_steps=0, epochs=0), "max_steps and train.epochs"),
    (dict(batch_tokens=100, max_length=512), "batch_tokens=100"),
    (dict(lr=0), "train.lr=0"),
    (dict(deepspeed="missing.json"), "missing.json: no such file"),
])
def test_bad_config_fails_with_one_line(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


# --- training runs -------------------------------------------------------------------------------

def test_three_steps_change_every_parameter_and_save_the_model(tiny_model_dir, tmp_path):
    initial, _ = load_generator(ModelConfig(), str(tiny_model_dir))
    result, model = run_training(tiny_model_dir, tmp_path, small())
    assert result.steps == 3 and result.resumed_from == 0
    start = dict(initial.named_parameters())
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, start[n])]
    assert not unchanged, f"parameters not trained: {unchanged}"
    saved, _ = load_generator(ModelConfig(), result.model_dir)
    assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in saved.named_parameters())
    rows = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "accuracy"} <= set(rows[0])
    assert not (tmp_path / CHECKPOINTS).exists()
    again, _ = run_training(tiny_model_dir, tmp_path, small())  # a finished run is not redone
    assert again == result


@pytest.mark.parametrize("precision", [Precision.bf16, Precision.fp32])
def test_bf16_and_fp32_both_train(tiny_model_dir, tmp_path, precision):
    result, model = run_training(tiny_model_dir, tmp_path, small(max_steps=2, precision=precision))
    assert result.precision == ("bf16" if precision is Precision.bf16 else "no")
    assert result.final_loss == result.final_loss  # not NaN
    assert "_original_forward" not in model.__dict__  # autocast wrapper removed from the caller's model


def test_gradient_accumulation_matches_one_large_batch(tiny_model_dir, tmp_path):
    """2 micro-batches x 2 examples accumulated == 1 batch of 4: same loss, same gradient norm."""
    common = dict(max_steps=1, lr=1e-4, grad_clip=0.0)
    accumulated, a = run_training(tiny_model_dir, tmp_path / "acc", small(batch_size=2, grad_accum=2, **common), n=4)
    single, b = run_training(tiny_model_dir, tmp_path / "one", small(batch_size=4, grad_accum=1, **common), n=4)
    rows = [[json.loads(x) for x in (tmp_path / d / METRICS_FILE).read_text().splitlines()] for d in ("acc", "one")]
    assert rows[0][0]["loss"] == pytest.approx(rows[1][0]["loss"], rel=1e-5)
    assert rows[0][0]["grad_norm"] == pytest.approx(rows[1][0]["grad_norm"], rel=1e-4)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
    assert accumulated.examples == single.examples == 4


def test_checkpoint_from_other_settings_is_refused(tiny_model_dir, tmp_path):
    def stop_at_step_3(model, batch, calls=[0]):
        calls[0] += 1
        if calls[0] > 2:
            raise KeyboardInterrupt
        return sft.sft_loss(model, batch)

    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_model_dir, tmp_path, small(max_steps=4, checkpoint_every=2), loss_fn=stop_at_step_3)
    assert (tmp_path / CHECKPOINTS / "step-2" / "trainer_state.json").is_file()
    with pytest.raises(ValueError, match=r"step-2: written with lr=0.01, now lr=0.02; delete"):
        run_training(tiny_model_dir, tmp_path, small(max_steps=4, checkpoint_every=2, lr=2e-2))


KILLED_RUN = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
import torch
torch.set_num_threads({threads})
from mucode import sft
import test_training as t

def hang_after_step_4(model, batch, calls=[0]):
    calls[0] += 1
    if calls[0] > 4:  # one micro-batch per step: steps 1-4 done and checkpointed, then "hang"
        print("hanging", flush=True)
        time.sleep(600)
    return sft.sft_loss(model, batch)

t.run_training(sys.argv[1], sys.argv[2], t.small(**{config}), loss_fn=hang_after_step_4)
"""


def test_killed_stage_resumes_and_matches_an_uninterrupted_run(tiny_model_dir, tmp_path):
    config = dict(max_steps=7, checkpoint_every=2, keep_checkpoints=1)  # 16 examples / 4 = 4 steps per epoch
    reference, ref_model = run_training(tiny_model_dir, tmp_path / "ref", small(**config))

    out = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN.format(root=str(ROOT), tests=str(ROOT / "tests"), config=config,
                                        threads=torch.get_num_threads()))
    # its own wandb service: a child given this process's (WANDB_SERVICE) leaves its run open in it when killed
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_model_dir), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        for line in proc.stdout:  # "hanging" comes after the step-4 checkpoint is complete
            output.append(line)
            if "hanging" in line:
                break
        assert (out / CHECKPOINTS / "step-4" / "trainer_state.json").is_file(), "".join(output)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in (out / CHECKPOINTS).glob("step-*")] == ["step-4"]  # step-2 pruned (keep 1)
    assert not (out / "model").exists()

    resumed, model = run_training(tiny_model_dir, out, small(**config))
    assert resumed.resumed_from == 4
    assert resumed.steps == reference.steps == 7
    assert resumed.examples == reference.examples
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        assert torch.equal(p, q), f"{name} differs after resume"
    steps = [json.loads(x)["step"] for x in (out / METRICS_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6, 7]  # the killed run logged 1-4, the resumed one 5-7
