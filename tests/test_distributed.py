"""The SFT stage under real multi-process launches on CPU (gloo): plain DDP reproduces one process on
the same global batch, and DeepSpeed ZeRO-2 trains, checkpoints, resumes and saves a model that
reloads; ZeRO-3 the same on GPUs (marker gpu, runs only with CUDA). And a Hydra --multirun of the
stage through the submitit launcher (hydra/launcher=local, conf/hydra/launcher/).

Every run is `torchrun --standalone` (or plain python) over pipelines/train_generator.py, the way
slurm/train_generator.sbatch starts it on each node. The first DeepSpeed run of a machine builds a
C++ op (deepspeed_shm_comm, ~35 s on 2 cores) into $TORCH_EXTENSIONS_DIR (the Makefile points it
at .cache/torch_extensions), later runs load it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mucode.models import ModelConfig, load_generator
from mucode.records import SFTExample, write_records

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "pipelines" / "train_generator.py"
TIMEOUT = 900  # s per launch; DeepSpeed's first build alone takes ~35 s on 2 cores

# Stops every rank at the same micro-batch, after the step-2 checkpoint: a run killed mid-way.
STOPPED_RUN = """
import json, sys
from pathlib import Path
from mucode import sft
from mucode.models import ModelConfig, load_generator
from mucode.records import SFTExample, read_records
from mucode.tracking import TrackingConfig, WandbMode, open_logger
from mucode.training import TrainConfig, process_state, train

model_dir, data, out, stop_after, values = sys.argv[1:6]
config = TrainConfig(**json.loads(values))

def stopping_loss(model, batch, calls=[0]):
    calls[0] += 1
    if calls[0] > int(stop_after):
        sys.exit(3)
    return sft.sft_loss(model, batch)

model, tok = load_generator(ModelConfig(), model_dir)
items, _ = sft.tokenize_all(tok, read_records(data, SFTExample), config.max_length)
main = process_state(config).is_main_process
with open_logger(TrackingConfig(wandb=WandbMode.disabled), Path(out), "test", main_process=main) as logger:
    train(model, items, [len(t.input_ids) for t in items], lambda b: sft.collate(b, tok.pad_token_id),
          stopping_loss, config, out, logger, tok)
"""


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> Path:
    """16 SFTExamples of varied lengths as an input folder of the stage."""
    rows = []
    for i in range(16):
        words = " then add 1" * (i % 4)
        messages = [{"role": "user", "content": f"Write a function fold(x) that will add {i}{words}."}]
        rows.append(SFTExample(f"p{i}", messages, f"def fold(x):\n    return x + {i}"))
    path = tmp_path_factory.mktemp("sft") / "examples"
    write_records(rows, path, SFTExample)
    return path


def recipe(**overrides) -> dict:
    """train.* values: 4 steps of a global batch of 4 examples (2 per micro-batch), a checkpoint at step 2."""
    values = dict(max_steps=4, epochs=0.0, batch_size=2, batch_tokens=0, max_length=256, lr=1e-2, warmup_steps=1,
                  log_every=1, checkpoint_every=2, precision="fp32")
    return {**values, **overrides}


def stage_args(model_dir: Path, data: Path, out: Path, train: dict) -> list[str]:
    """Overrides of pipelines/train_generator.py: train `model_dir` on `data` into `out`."""
    return [f"run_dir={out.parent}", f"sft.init={model_dir}", f"inputs=[{data}]", "sft.replay=0", f"out_dir={out}",
            "tracking.wandb=disabled", *(f"sft.train.{k}={v}" for k, v in train.items())]


def launch(nproc: int, script: str | Path, args: list[str], cpu: bool = True) -> subprocess.Popen:
    """Start `script` under torchrun with `nproc` processes (plain python for nproc=0), from the repo root;
    on the CPU (gloo) unless `cpu` is false."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if cpu:
        env.update(CUDA_VISIBLE_DEVICES="", DS_ACCELERATOR="cpu")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    runner = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else []
    return subprocess.Popen([sys.executable, *runner, str(script), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, expect_ok: bool = True) -> str:
    """Wait for a launch; fail with its output if it did not exit as expected."""
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"launch timed out after {TIMEOUT} s:\n{output[-5000:]}")
    assert (proc.returncode == 0) == expect_ok, f"exit {proc.returncode}:\n{output[-5000:]}"
    return output


def losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["step"] is not None]  # the last row (step null) is the stage's result


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    model, _ = load_generator(ModelConfig(), str(model_dir))
    return dict(model.named_parameters())


def assert_same_training(out: Path, reference: Path, initial: Path, atol: float) -> None:
    """`out` logged the losses of `reference` and saved the same weights, every one of them trained."""
    assert losses(out) == pytest.approx(losses(reference), rel=1e-5)
    got, want, start = weights(out / "model"), weights(reference / "model"), weights(initial)
    for name, p in want.items():
        torch.testing.assert_close(got[name], p, atol=atol, rtol=0, msg=name)
        assert not torch.equal(p, start[name]), f"{name} not trained"


def run_reference(tiny_model_dir, sft_data, out: Path, cpu: bool = True) -> Path:
    """One plain process, 2 accumulated micro-batches per step: the run the launches must reproduce."""
    finish(launch(0, STAGE, stage_args(tiny_model_dir, sft_data, out, recipe(grad_accum=2)), cpu=cpu))
    assert json.loads((out / "train_result.json").read_text())["examples"] == 4 * 4
    return out


@pytest.fixture(scope="module")
def reference(tiny_model_dir, sft_data, tmp_path_factory) -> Path:
    return run_reference(tiny_model_dir, sft_data, tmp_path_factory.mktemp("reference") / "one")


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_the_same_global_batch(tiny_model_dir, sft_data, reference, tmp_path):
    """2 ranks x 1 micro-batch of 2 == 1 process x 2 accumulated micro-batches of 2: same loss, same weights."""
    out = tmp_path / "ddp"
    finish(launch(2, STAGE, stage_args(tiny_model_dir, sft_data, out, recipe(grad_accum=1))))
    assert json.loads((out / "train_result.json").read_text())["fingerprint"]["processes"] == 2
    assert_same_training(out, reference, tiny_model_dir, atol=1e-5)


def _deepspeed_stop_and_resume(stage_config: str, nproc: int, atol: float, tiny_model_dir, sft_data, reference,
                               tmp_path, cpu: bool = True) -> None:
    """A DeepSpeed run stopped after its step-2 checkpoint resumes from it (the ZeRO shards of the
    optimizer reload) and ends with the reference run's losses and weights, saved and reloaded."""
    train = recipe(deepspeed=f"conf/deepspeed/{stage_config}.json")
    script, out = tmp_path / "stopped_run.py", tmp_path / stage_config
    script.write_text(STOPPED_RUN)
    finish(launch(nproc, script, [str(tiny_model_dir), str(sft_data), str(out), "2", json.dumps(train)], cpu=cpu),
           expect_ok=False)
    assert (out / "checkpoints" / "step-2" / "trainer_state.json").is_file()
    assert not (out / "model").exists()

    output = finish(launch(nproc, STAGE, stage_args(tiny_model_dir, sft_data, out, train), cpu=cpu))
    assert "resuming from" in output and "step-2" in output
    result = json.loads((out / "train_result.json").read_text())
    assert (result["resumed_from"], result["steps"], result["fingerprint"]["processes"]) == (2, 4, nproc)
    assert not (out / "checkpoints").exists()  # removed once the model is saved
    assert_same_training(out, reference, tiny_model_dir, atol)


@pytest.mark.slow
def test_zero2_two_cpu_processes_train_checkpoint_resume_and_save(tiny_model_dir, sft_data, reference, tmp_path):
    _deepspeed_stop_and_resume("zero2", 2, 1e-5, tiny_model_dir, sft_data, reference, tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="ZeRO-3 runs on CUDA GPUs only here")
def test_zero3_on_gpus_train_checkpoint_resume_and_save(tiny_model_dir, sft_data, tmp_path):
    """fp32 on the GPU, so that the reference (one process, same GPU) is comparable; NCCL."""
    reference = run_reference(tiny_model_dir, sft_data, tmp_path / "reference", cpu=False)
    _deepspeed_stop_and_resume("zero3", min(2, torch.cuda.device_count()), 1e-4, tiny_model_dir, sft_data,
                               reference, tmp_path, cpu=False)


def test_hydra_multirun_through_the_submitit_launcher(tiny_model_dir, sft_data, tmp_path):
    """Two sweep points of the SFT stage, each a submitit job on this machine (hydra/launcher=local)."""
    args = [a for a in stage_args(tiny_model_dir, sft_data, tmp_path / "x", recipe(max_steps=2, checkpoint_every=0))
            if not a.startswith(("out_dir=", "sft.train.lr="))]
    sweep = ["--multirun", "hydra/launcher=local", "out_dir=${run_dir}/lr${sft.train.lr}", "sft.train.lr=1e-3,2e-3"]
    output = finish(launch(0, STAGE, [*sweep, *args]))
    assert "Submitit 'local' sweep output dir" in output
    for lr in ("0.001", "0.002"):
        manifest = json.loads((tmp_path / f"lr{lr}" / "manifest.json").read_text())
        assert manifest["complete"] and manifest["metrics"]["train"]["steps"] == 2
    (sweep_dir,) = (tmp_path / "multirun").iterdir()
    assert len([d for d in (sweep_dir / ".submitit").iterdir() if d.name.isdigit()]) == 2  # one job per point
