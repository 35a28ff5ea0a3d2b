"""The sbatch scripts of slurm/ run for real: a one-machine Slurm cluster (slurm/local-cluster.sh: Debian
slurm-wlm + munge, two slurmd emulating nodes n1 and n2) runs the warm start, a 4-shard rollout array
and its merge chained by slurm/iterate.sh with afterok, a 2-node x 1-task torchrun SFT (gloo), a
requeue on the pre-timeout signal that resumes from the checkpoint, and a failed stage that cancels
the jobs waiting for it. Plus, without a cluster, the driver's dependency graph (--dry-run; a Hydra
--multirun through the submitit launcher's multirun is in test_distributed.py).

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

from mucode.records import Episode, read_records

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "slurm" / "local-cluster.sh"
JOB_TIMEOUT = 600  # s for a whole chain; on 2 idle cores each job takes 10-40 s

# The tiny default model on 8 problems of a 100-problem embedded suite: a 2-step warm start, 1 short
# episode per problem; training on the 8 warm-up problems, 2 per micro-batch.
TRAIN = ["task.embedded.size=100", "task.limit=8", "train.batch_size=2", "train.batch_tokens=0",
         "train.precision=fp32", "train.log_every=1"]
WARMUP = " ".join([*TRAIN, "train.max_steps=2"])
ROLLOUT = "rollout.samples=1 rollout.turns=2 rollout.chunk_size=2 sampling.max_new_tokens=8"


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


def submit_chain(run_dir: Path, *options: str, **stage_args: str) -> dict[str, str]:
    """slurm/iterate.sh: stage name -> job id."""
    env = {**job_env(), **stage_args}
    out = subprocess.run([str(ROOT / "slurm" / "iterate.sh"), *options, f"run_dir={run_dir}"], env=env,
                         capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    return {name: job for name, _, job in (line.split("\t") for line in out.stdout.splitlines())}


def times(info: list[dict[str, str]], key: str) -> list[str]:
    return sorted(j[key] for j in info)  # ISO timestamps sort as times


# ---------------------------------------------------------------------------------------------
# Without a cluster


def test_iterate_dry_run_chains_the_main_jobs_stages_with_afterok(tmp_path):
    env = {**os.environ, "ROLLOUT_ARGS": "rollout.samples=2", "TRAIN_SBATCH": "--gpus-per-node=8"}
    out = subprocess.run([str(ROOT / "slurm" / "iterate.sh"), "--dry-run", "--iterations", "2", "--shards", "8",
                          "--nodes", "2", f"run_dir={tmp_path}"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    table = [tuple(line.split("\t")) for line in out.stdout.splitlines()]
    commands = dict(zip(((name, it) for name, it, _ in table), out.stderr.splitlines()))
    ids = {(name, it): job for name, it, job in table}
    chain = [("warmup", "0"), *[(s, str(i)) for i in (1, 2) for s in ("rollouts", "merge", "verifier", "relabel", "sft")],
             ("rollouts", "3"), ("merge", "3"), ("final_verifier", "3")]
    evals = [("evaluate", str(i)) for i in range(3)]
    assert [(name, it) for name, it, _ in table] == [*chain, *evals, ("report", "2")]

    def after(stage):
        found = re.search(r"--dependency=afterok:([\d:]+)", commands[stage])
        return found and found.group(1)

    assert after(("warmup", "0")) is None
    for before, stage in zip(chain, chain[1:]):
        assert after(stage) == ids[before], (before, stage)
    assert {after(e) for e in evals} == {ids[("final_verifier", "3")]}  # the evaluations run side by side
    assert after(("report", "2")) == ":".join(ids[e] for e in evals)
    assert "--array=0-7" in commands[("rollouts", "1")]
    assert "iteration=1 rollout.samples=2" in commands[("rollouts", "1")]
    sft2 = commands[("sft", "2")]
    assert "--nodes=2 --gpus-per-node=8 slurm/train_generator.sbatch" in sft2
    assert f"inputs=[{tmp_path}/iter1/relabel/examples,{tmp_path}/iter2/relabel/examples]" in sft2
    assert f"init={tmp_path}/warmup/model" in sft2  # generator 0, as in the main job
    final = commands[("final_verifier", "3")]
    assert f"out_dir={tmp_path}/final_verifier inputs=[{tmp_path}/iter1/rollouts,{tmp_path}/iter2/rollouts," \
           f"{tmp_path}/iter3/rollouts]" in final
    assert "name=iter2" in commands[("evaluate", "2")] and "iterations=2" in commands[("report", "2")]
    assert all("--kill-on-invalid-dep=yes" in c for c in commands.values())
    hub = subprocess.run([str(ROOT / "slurm" / "iterate.sh"), "--dry-run", "model=smollm2"], capture_output=True,
                         text=True)
    assert hub.returncode == 0 and not hub.stdout.startswith("warmup")  # a pretrained model is generator 0
    bad = subprocess.run([str(ROOT / "slurm" / "iterate.sh"), "--dry-run", "--stages", "warmup,sfft"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown stage 'sfft'" in bad.stderr


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
def chain(cluster, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One iteration's first stages as iterate.sh submits them: warm start -> rollout array -> merge."""
    run_dir = tmp_path_factory.mktemp("slurm") / "run"
    ids = submit_chain(run_dir, "--stages", "warmup,rollouts", "--shards", "4",
                       WARMUP_ARGS=WARMUP, ROLLOUT_ARGS=ROLLOUT)
    wait(list(ids.values()), run_dir / "slurm")
    return run_dir, ids


@pytest.mark.slurm
def test_chain_runs_warmup_then_a_4_shard_rollout_array_then_the_merge(chain):
    run_dir, ids = chain
    logs = run_dir / "slurm"
    warmup, array, merge = (assert_completed(ids[k], logs) for k in ("warmup", "rollouts", "merge"))
    assert sorted(j["ArrayTaskId"] for j in array) == ["0", "1", "2", "3"]
    # afterok: each stage started only after the one before it ended
    assert times(warmup, "EndTime")[-1] <= times(array, "StartTime")[0]
    assert times(array, "EndTime")[-1] <= times(merge, "StartTime")[0]

    rollouts = run_dir / "iter1" / "rollouts"
    for i in range(4):  # 8 problems in chunks of 2: shard i of 4 ran chunk i
        shard = rollouts / f"shard-00{i}-of-004"
        assert json.loads((shard / "manifest.json").read_text())["complete"]
        assert sorted(p.name for p in shard.glob("chunk-*")) == [f"chunk-0000{i}"]
    episodes = read_records(rollouts / "episodes", Episode)
    assert len(episodes) == 8 and len({e.problem_id for e in episodes}) == 8
    assert json.loads((rollouts / "manifest.json").read_text())["metrics"]["episodes"] == 8
    assert (run_dir / "warmup" / "manifest.json").is_file()
    assert len(list(logs.glob("mucode-rollouts-1-*.out"))) == 4


@pytest.mark.slurm
def test_train_generator_on_two_nodes_with_srun_torchrun(chain):
    run_dir, _ = chain
    out, logs = run_dir / "sft-2nodes", run_dir / "slurm"
    job = sbatch("--nodes=2", f"--output={logs}/two-nodes-%j.out", "slurm/train_generator.sbatch",
                 f"run_dir={run_dir}", f"init={run_dir}/warmup/model", f"out_dir={out}", "train.max_steps=2", *TRAIN)
    wait([job], logs)
    (info,) = assert_completed(job, logs)
    assert (info["NumNodes"], info["NodeList"]) == ("2", "n[1-2]")
    log = (logs / f"two-nodes-{job}.out").read_text()
    assert "torchrun: 2 node(s) x 1 process(es), rendezvous 127.0.0.1:" in log
    assert "training 2 steps (from 0) on 8 examples, 2 process(es)" in log
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
                 f"init={run_dir}/warmup/model", f"out_dir={out}", "train.max_steps=24", "train.checkpoint_every=2",
                 *TRAIN)
    deadline = time.monotonic() + JOB_TIMEOUT
    while not (out / "checkpoints" / "step-2" / "trainer_state.json").is_file():
        assert time.monotonic() < deadline and sh("squeue", "-h", "-j", job).stdout.strip(), tail_logs(logs)
        time.sleep(0.2)
    sh("scancel", "--signal=USR1", "--batch", job)
    wait([job], logs)
    (info,) = assert_completed(job, logs)
    assert info["Restarts"] == "1"
    log = (logs / f"requeue-{job}.out").read_text()  # --open-mode=append: both runs
    assert "USR1" in log and f"job {job} restart 1" in log and "resuming from" in log
    result = json.loads((out / "train_result.json").read_text())
    assert result["steps"] == 24 and result["resumed_from"] >= 2


@pytest.mark.slurm
def test_a_failed_stage_cancels_the_jobs_that_wait_for_it(cluster, tmp_path):
    ids = submit_chain(tmp_path / "run", "--stages", "warmup,rollouts", WARMUP_ARGS="train.lr=-1")
    wait(list(ids.values()))
    (warmup,) = jobs(ids["warmup"])
    assert warmup["JobState"] == "FAILED" and warmup["ExitCode"] != "0:0"  # torchrun exits 1 for any failure
    log = next((tmp_path / "run" / "slurm").glob("mucode-warmup-0-*.out")).read_text()
    assert "error: train.lr=-1.0 must be > 0" in log
    for stage in ("rollouts", "merge"):
        states = {(j["JobState"], j["Reason"]) for j in jobs(ids[stage])}
        assert states == {("CANCELLED", "DependencyNeverSatisfied")}, (stage, states)
    assert not (tmp_path / "run" / "iter1").exists()
