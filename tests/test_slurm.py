"""The main job's plan as Slurm jobs, for real: a one-machine Slurm cluster (slurm/local-cluster.sh:
Debian slurm-wlm + munge, two slurmd emulating nodes n1 and n2) runs the whole miniature main job
submitted by slurm/iterate.sh (python -m mucode.slurm) as a chain of afterok jobs with a 3-shard
rollout array, and every stage writes the same config.yaml as the main job run in one process;
plus a 2-node x 1-task torchrun SFT (gloo), a requeue on the pre-timeout signal that resumes from the
checkpoint, and a failed stage that cancels the jobs waiting for it. Without a cluster: the submitter's
dependency graph (--dry-run) and the overrides it writes, which compose back to each stage's config
(a Hydra --multirun through the submitit launcher is in test_distributed.py).

The cluster tests (marker slurm) start the cluster themselves and stop it afterwards if they started
it; they need root and the packages (installed by `sudo bash slurm/local-cluster.sh install`, which
`up` also does when it can). When the cluster cannot start they skip, saying why, unless
MUCODE_REQUIRE_SLURM=1 (CI), where that is a failure. There is no slurmdbd, hence no sacct: job
states come from `scontrol show job` (kept an hour after the end).
"""

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mucode import artifacts, slurm
from mucode.config import compose
from mucode.records import Episode, read_records
from mucode.stages.expert_iteration import plan

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "slurm" / "local-cluster.sh"
JOB_TIMEOUT = 600  # s for a whole chain; on 2 idle cores each job takes 10-40 s

# A short SFT of a tiny model on 8 warm-up problems, 2 per micro-batch, for the training-job tests.
TRAIN = ["task.embedded.size=100", "sft.train.batch_size=2", "sft.train.batch_tokens=0", "sft.train.precision=fp32",
         "sft.train.log_every=1", "sft.train.epochs=0", "tracking.wandb=disabled"]


def job_env() -> dict[str, str]:
    """The environment sbatch exports to the jobs: this interpreter and checkout, no wandb."""
    return {**os.environ, "MUCODE_PYTHON": sys.executable, "MUCODE_ROOT": str(ROOT), "WANDB_MODE": "disabled"}


def sh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=job_env(), **kw)
    assert not check or proc.returncode == 0, f"{args} exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def sbatch(*args: str) -> str:
    return sh("sbatch", "--parsable", *args).stdout.strip().split(";")[0]


def jobs(job: str) -> list[dict[str, str]]:
    """`scontrol show job -o`, one dict per job (one per element of an array)."""
    out = sh("scontrol", "show", "job", "-o", job).stdout
    return [dict(re.findall(r"(\w[\w/:]*)=(\S*)", line)) for line in out.splitlines() if line.strip()]


def wait(ids: list[str], logs: Path | None = None, timeout: float = JOB_TIMEOUT) -> None:
    """Poll until none of the jobs is pending or running (sbatch --wait polls slowly)."""
    deadline = time.monotonic() + timeout
    while sh("squeue", "-h", "-j", ",".join(ids)).stdout.strip():
        if time.monotonic() > deadline:
            sh("scancel", *ids, check=False)
            pytest.fail(f"jobs {ids} still queued after {timeout} s\n{tail_logs(logs)}")
        time.sleep(0.5)


def tail_logs(logs: Path | None) -> str:
    files = sorted(logs.glob("*.out")) if logs and logs.is_dir() else []
    return "\n".join(f"==> {f.name}\n{f.read_text()[-3000:]}" for f in files)


def assert_completed(job: str, logs: Path | None = None) -> list[dict[str, str]]:
    info = jobs(job)
    bad = [(j["JobId"], j["JobState"], j["ExitCode"]) for j in info
           if (j["JobState"], j["ExitCode"]) != ("COMPLETED", "0:0")]
    assert not bad, f"not completed: {bad}\n{tail_logs(logs)}"
    return info


def submit_chain(run_dir: Path, *args: str) -> dict[str, str]:
    """slurm/iterate.sh from another directory: step name -> job id."""
    out = subprocess.run([str(ROOT / "slurm" / "iterate.sh"), *args, f"run_dir={run_dir}"], env=job_env(),
                         capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    return dict(line.split("\t") for line in out.stdout.splitlines())


def times(info: list[dict[str, str]], key: str) -> list[str]:
    return sorted(j[key] for j in info)  # ISO timestamps sort as times


# ---------------------------------------------------------------------------------------------
# Without a cluster


def _dry_run(*args: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    out = subprocess.run([sys.executable, "-m", "mucode.slurm", "--dry-run", *args], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    names = [line.split("\t")[0] for line in out.stdout.splitlines()]
    ids = dict(line.split("\t") for line in out.stdout.splitlines())
    return names, ids, dict(zip(names, out.stderr.splitlines()))


def test_dry_run_submits_the_main_jobs_plan_with_its_dependencies(tmp_path):
    overrides = [f"run_dir={tmp_path}", "iterations=2", "final_rollouts=true", "rollout.samples=2"]
    names, ids, commands = _dry_run("--shards", "8", "--nodes", "2", "--train-sbatch", "--gpus-per-node=8",
                                    *overrides)  # an sbatch option as the value: not read as the submitter's
    steps = plan(compose("expert_iteration", overrides))
    expected = [n for step in steps for n in ([f"{step.name}/shards"] if step.stage == "collect_rollouts" else [])
                + [step.name]]
    assert names == expected

    def after(name):
        found = re.search(r"--dependency=afterok:([\d:]+)", commands[name])
        return set(found.group(1).split(":")) if found else set()

    for step in steps:  # every job waits for exactly the jobs of the steps it needs (a rollout: its merge)
        assert after(step.name) == ({ids[f"{step.name}/shards"]} if step.stage == "collect_rollouts"
                                    else {ids[n] for n in step.needs}), step.name
        script = "merge_rollouts" if step.stage == "collect_rollouts" else step.stage
        assert f"slurm/{script}.sbatch " in commands[step.name] + " "
    assert after("iter1/rollouts/shards") == {ids["warmup"]}
    assert "--array=0-7" in commands["iter1/rollouts/shards"] and "MUCODE_SHARDS=8" in commands["iter1/rollouts"]
    assert "iteration=2 " in commands["iter2/rollouts/shards"] and "rollout.samples=2" in commands["iter2/rollouts"]
    assert "--nodes=2 --gpus-per-node=8 slurm/train_generator.sbatch" in commands["iter2/sft"]
    assert "--nodes=1" in commands["warmup"] and "--gpus-per-node=8" in commands["iter1/verifier"]
    assert f"out_dir={tmp_path}/final_verifier" in commands["final_verifier"]
    assert "name=iter2" in commands["eval/iter2"] and "candidates_sweep" not in commands["eval/base"]
    # the recipes have one home: a stage gets no recipe value the main job does not change
    assert not re.search(r"\b(sft|verifier|warmup)\.train\.", " ".join(commands.values()))
    assert all("--kill-on-invalid-dep=yes" in c for c in commands.values())


def test_dry_run_skips_complete_steps_and_filters_stages(tmp_path):
    names, _, _ = _dry_run("model=smollm2", f"run_dir={tmp_path}")
    assert "warmup" not in names and names[0] == "prepare"  # a pretrained model is its own generator 0
    layout = artifacts.RunLayout(tmp_path)
    for stage in (layout.problems(), layout.base):
        stage.mkdir(parents=True)
        artifacts.write_manifest(stage, {}, [])
    names, ids, commands = _dry_run(f"run_dir={tmp_path}", "--stages", "warm_start,collect_rollouts",
                                    "--after", "77")
    assert names == ["warmup", "iter1/rollouts/shards", "iter1/rollouts", "iter2/rollouts/shards", "iter2/rollouts"]
    assert "--dependency=afterok:77 " in commands["warmup"]  # prepare is complete: nothing waits for it
    assert f"--dependency=afterok:{ids['warmup']} " in commands["iter1/rollouts/shards"]
    # generator 1 (iter1/sft) is left out by --stages: its rollouts wait for --after only
    assert "--dependency=afterok:77 " in commands["iter2/rollouts/shards"]
    # a complete step that would now run with another config stops the submission, as the stage would
    manifest = artifacts.read_manifest(layout.problems())
    manifest["config"] = {"run_dir": str(tmp_path), "task": {"name": "mbpp"}}
    artifacts.atomic_write_json(layout.problems() / "manifest.json", manifest)
    out = subprocess.run([sys.executable, "-m", "mucode.slurm", "--dry-run", f"run_dir={tmp_path}"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and not out.stdout, out.stderr
    assert "problems: complete, but it would now run with task.name: 'mbpp' -> 'embedded'" in out.stderr


@pytest.mark.parametrize("argv, message", [
    (["--stages", "warm_start,sfft"], "unknown stage sfft"),
    (["warmup.lr=-1"], "error: train.lr=-1.0 must be > 0"),
    (["--shards", "0"], "--shards and --nodes take a number >= 1"),
])
def test_submitter_bad_input_fails_with_one_line_before_submitting(argv, message, tmp_path):
    out = subprocess.run([sys.executable, "-m", "mucode.slurm", "--dry-run", f"run_dir={tmp_path}", *argv],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and message in out.stderr.strip().splitlines()[-1] and not out.stdout, out.stderr


@pytest.mark.parametrize("value", [
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m[\"content\"] }}<|end|>{% endfor %}",
    "a path/with spaces, commas=and [brackets]", "${run_dir}/literal \\ back\\slash", "null", "0/1", "true", "",
])
def test_overrides_compose_back_to_the_very_same_config(value):
    """Any config value survives the trip through a Hydra override: a chat template, a path with spaces."""
    config = compose("train_verifier", ["run_dir=/tmp/x y", "iteration=2", "verifier.loss=bce"])
    config.model.chat_template = value
    config.inputs = ["/a b/iter1/rollouts", value or "x"]
    args = slurm.overrides("train_verifier", config)
    assert compose("train_verifier", args) == config
    assert "verifier.loss=bce" in args and "iteration=2" in args and not any(a.startswith("seed=") for a in args)


# ---------------------------------------------------------------------------------------------
# On the local cluster


@pytest.fixture(scope="module")
def cluster():
    """Two emulated nodes (n1, n2) up for this module; stopped afterwards if this fixture started them."""
    lock = open(Path(os.environ.get("TMPDIR", "/tmp")) / "mucode-slurm-tests.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one test session at a time drives the machine's cluster
    env = {**os.environ, "SLURM_LOCAL_NODES": "2"}
    status = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True, env=env)
    was_up = status.returncode == 0
    up = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True, env=env, timeout=900)
    if up.returncode != 0:
        why = (up.stderr.strip().splitlines() or ["no output"])[-1]
        lock.close()
        if os.environ.get("MUCODE_REQUIRE_SLURM") == "1":
            pytest.fail(f"the local Slurm cluster did not start (MUCODE_REQUIRE_SLURM=1): {why}")
        pytest.skip(f"the local Slurm cluster cannot start here: {why}")
    yield
    if not was_up:
        subprocess.run(["bash", str(CLUSTER), "down"], capture_output=True, text=True, env=env, timeout=120)
    lock.close()


@pytest.fixture(scope="module")
def chain(cluster, tmp_path_factory, mini) -> tuple[Path, dict[str, str]]:
    """The whole miniature main job (final_rollouts=true) submitted by slurm/iterate.sh, finished."""
    run_dir = tmp_path_factory.mktemp("slurm") / "run"
    ids = submit_chain(run_dir, "--shards", "3", *mini, "final_rollouts=true")
    wait(list(ids.values()), run_dir / "slurm")
    return run_dir, ids


@pytest.mark.slurm
def test_chain_runs_every_stage_with_afterok_and_a_3_shard_rollout_array(chain):
    run_dir, ids = chain
    logs = run_dir / "slurm"
    info = {name: assert_completed(job, logs) for name, job in ids.items()}
    assert sorted(j["ArrayTaskId"] for j in info["iter1/rollouts/shards"]) == ["0", "1", "2"]
    # afterok: each stage started only after the ones it needs ended
    assert times(info["warmup"], "EndTime")[-1] <= times(info["iter1/rollouts/shards"], "StartTime")[0]
    assert times(info["iter1/rollouts/shards"], "EndTime")[-1] <= times(info["iter1/rollouts"], "StartTime")[0]
    assert times(info["iter1/sft"], "EndTime")[-1] <= times(info["eval/iter1"], "StartTime")[0]
    rollouts = run_dir / "iter1" / "rollouts"
    for i in range(3):  # 6 problems in chunks of 2: shard i of 3 ran chunk i
        shard = rollouts / f"shard-00{i}-of-003"
        assert json.loads((shard / "manifest.json").read_text())["complete"]
        assert sorted(p.name for p in shard.glob("chunk-*")) == [f"chunk-0000{i}"]
    episodes = read_records(rollouts / "episodes", Episode)
    assert len(episodes) == 12 and len({e.problem_id for e in episodes}) == 6
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(summary["generators"]) == ["base", "iter1"]
    assert list(summary["tasks"]["humaneval"]) == ["base", "iter1"]
    assert len(list(logs.glob("mucode-iter1-rollouts-*.out"))) == 4  # 3 array tasks + the merge


@pytest.mark.slurm
def test_every_stage_run_by_slurm_writes_the_config_yaml_of_the_main_job(chain, mini_run):
    """The jobs get their configs as overrides of their own stage YAML; the main job builds them in Python."""
    run_dir, _ = chain
    folders = sorted(str(p.parent.relative_to(mini_run)) for p in mini_run.rglob("config.yaml")
                     if "logs" not in p.relative_to(mini_run).parts)
    # problems (+ humaneval's), base, warmup, 2 x rollouts, 2 verifiers, relabel, sft, 2 evals x 2 tasks
    assert len(folders) == 14, folders
    for folder in folders:
        main_job = (mini_run / folder / "config.yaml").read_text().replace(str(mini_run), "RUN")
        by_slurm = (run_dir / folder / "config.yaml").read_text().replace(str(run_dir), "RUN")
        assert by_slurm == main_job, folder


@pytest.mark.slurm
def test_a_hub_architecture_on_mbpp_runs_every_stage_as_jobs_like_the_main_job(cluster, tmp_path_factory, hub, hub_run):
    """model=hub (a real Hugging Face architecture and chat template) on MBPP, evaluated on MBPP and
    HumanEval: every step of the plan runs as a job (no warm start: the model is its own generator 0)
    and writes the config.yaml of the main job run in one process."""
    run_dir = tmp_path_factory.mktemp("slurm-hub") / "run"
    ids = submit_chain(run_dir, *hub)
    wait(list(ids.values()), run_dir / "slurm")
    for job in ids.values():
        assert_completed(job, run_dir / "slurm")
    assert "warmup" not in ids and "prepare" in ids and "eval/iter1" in ids
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(summary["generators"]) == list(summary["tasks"]["humaneval"]) == ["base", "iter1"]
    folders = sorted(str(p.parent.relative_to(hub_run)) for p in hub_run.rglob("config.yaml")
                     if "logs" not in p.relative_to(hub_run).parts)
    assert "problems-humaneval" in folders and "eval-humaneval/iter1" in folders, folders
    for folder in folders:
        main_job = (hub_run / folder / "config.yaml").read_text().replace(str(hub_run), "RUN")
        assert (run_dir / folder / "config.yaml").read_text().replace(str(run_dir), "RUN") == main_job, folder


@pytest.mark.slurm
def test_train_generator_on_two_nodes_with_srun_torchrun(chain):
    run_dir, _ = chain
    out, logs = run_dir / "sft-2nodes", run_dir / "slurm"
    job = sbatch("--nodes=2", f"--output={logs}/two-nodes-%j.out", "slurm/train_generator.sbatch",
                 f"run_dir={run_dir}", f"out_dir={out}", "sft.train.max_steps=2", *TRAIN)
    wait([job], logs)
    (info,) = assert_completed(job, logs)
    assert (info["NumNodes"], info["NodeList"]) == ("2", "n[1-2]")
    log = (logs / f"two-nodes-{job}.out").read_text()
    assert "torchrun: 2 node(s) x 1 process(es), rendezvous 127.0.0.1:" in log
    assert "training 2 steps (from 0) on " in log and "examples, 2 process(es)" in log
    assert {line[:3] for line in log.splitlines() if "step 2/2" in line} <= {"0: ", "1: "}  # srun --label
    assert any(line.startswith("1: ") for line in log.splitlines())  # the second node's torchrun ran
    result = json.loads((out / "train_result.json").read_text())
    assert (result["steps"], result["fingerprint"]["processes"]) == (2, 2)
    assert json.loads((out / "manifest.json").read_text())["complete"]
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.slurm
def test_usr1_requeues_the_job_and_training_resumes_from_its_checkpoint(chain):
    """The --signal=B:USR1 warning (sent here by hand) makes the script requeue itself; the rerun resumes."""
    run_dir, _ = chain
    out, logs = run_dir / "requeue", run_dir / "slurm"
    job = sbatch(f"--output={logs}/requeue-%j.out", "slurm/train_generator.sbatch", f"run_dir={run_dir}",
                 f"out_dir={out}", "sft.train.max_steps=200", "sft.train.checkpoint_every=2", *TRAIN)
    deadline = time.monotonic() + JOB_TIMEOUT
    while not (out / "checkpoints" / "step-2" / "trainer_state.json").is_file():
        assert time.monotonic() < deadline and sh("squeue", "-h", "-j", job).stdout.strip(), tail_logs(logs)
        time.sleep(0.05)  # a tiny model: steps take milliseconds
    sh("scancel", "--signal=USR1", "--batch", job)
    wait([job], logs)
    (info,) = assert_completed(job, logs)
    assert info["Restarts"] == "1"
    log = (logs / f"requeue-{job}.out").read_text()  # --open-mode=append: both runs
    assert "USR1" in log and f"job {job} restart 1" in log and "resuming from" in log
    result = json.loads((out / "train_result.json").read_text())
    assert result["steps"] == 200 and result["resumed_from"] >= 2


@pytest.mark.slurm
def test_a_failed_stage_cancels_the_jobs_that_wait_for_it(cluster, tmp_path, mini):
    """A chat template that does not parse fails the warm start at run time (the submitter cannot know)."""
    ids = submit_chain(tmp_path / "run", "--stages", "prepare,warm_start,collect_rollouts", *mini,
                       "model.chat_template='{{ broken'")
    wait(list(ids.values()))
    assert_completed(ids["prepare"])
    (warmup,) = jobs(ids["warmup"])
    assert warmup["JobState"] == "FAILED" and warmup["ExitCode"] != "0:0"  # torchrun exits 1 for any failure
    for name in ("iter1/rollouts/shards", "iter1/rollouts"):
        states = {(j["JobState"], j["Reason"]) for j in jobs(ids[name])}
        assert states == {("CANCELLED", "DependencyNeverSatisfied")}, (name, states)
    assert not (tmp_path / "run" / "iter1").exists()
