"""How the main job's generation stages grow when problems, K, N and T double (the README's cost model).

    python benchmarks/cost_model.py RUN_DIR [--problems 200] [--eval-problems 100] [--reps 1] [--json OUT]

RUN_DIR is a finished main job (`make run ARGS=run_dir=RUN_DIR`); its generators and final verifier are
reused, nothing in it is written. Each variant runs the stage's own entry point in a fresh process
(as the main job's stages run), into a scratch run directory, with the caller's OMP_NUM_THREADS (1 if unset):
    rollouts   generator 1 on `--problems` train problems: as is, 2x problems, 2x K (samples), 2x T (turns)
    eval       the last generator + final verifier on `--eval-problems` test problems, greedy + BoN with
               all selectors: as is (S=1, N=4, T=3), 2x problems, 2x N (candidates), 2x T (turns)
Measured per variant: wall seconds of the process, the largest peak RSS in its process tree
(getrusage of children: the stage process, or a sandbox worker if larger), generations made and
tokens/s (from the stage's manifest; evaluation only).
The training stages are not varied; their times come from the main job's summary.json. The generator's
run a fixed number of optimizer steps (their cost does not depend on problems, K, N or T; only their data
does); the verifier trains 2 epochs, so its cost grows with the rollouts' distinct codes.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def variants(args) -> list[tuple[str, str, list[str]]]:
    """(stage, name, overrides) for every measured variant."""
    p, e = args.problems, args.eval_problems
    n = f"rollout.problems_per_iteration={p}"
    rollouts = {"base": [n], "2x problems": [f"rollout.problems_per_iteration={2 * p}"],
                "2x K": [n, "rollout.samples=8"], "2x T": [n, "rollout.turns=6"]}
    lim = f"eval.limit={e}"
    evals = {"base": [lim], "2x problems": [f"eval.limit={2 * e}"], "2x N": [lim, "eval.search.candidates=8"],
             "2x T": [lim, "eval.search.turns=6"]}
    return [("rollouts", k, v) for k, v in rollouts.items()] + [("eval", k, v) for k, v in evals.items()]


def command(stage: str, run: Path, scratch: Path, overrides: list[str], last: int) -> list[str]:
    py = sys.executable
    if stage == "rollouts":
        return [py, str(ROOT / "pipelines/collect_rollouts.py"), f"run_dir={scratch}", "iteration=2",
                f"generator={run}/iter1/sft/model", "rollout.samples=4", "rollout.turns=3",
                "rollout.sampling.temperature=0.8", "rollout.sampling.max_new_tokens=96", *overrides]
    verifier = run / "final_verifier" / "model"
    if not verifier.is_dir():
        verifier = run / f"iter{last}" / "verifier" / "model"
    return [py, str(ROOT / "pipelines/evaluate.py"), f"run_dir={scratch}", f"name=iter{last}",
            f"generator={run}/iter{last}/sft/model", f"verifier={verifier}", "eval.split=test",
            "eval.search.searches=1", "eval.search.candidates=4", "eval.search.turns=3",
            "eval.search.sampling.temperature=0.8", "eval.search.sampling.max_new_tokens=96", *overrides]


# Runs the stage in a fresh parent, so getrusage(RUSAGE_CHILDREN) sees only this stage's process tree.
WRAPPER = """import resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, flush=True)
sys.exit(rc)"""


def measure(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, largest peak RSS in MB in its process tree) of one stage process."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd[1:3])} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    wall, peak = proc.stdout.split()[-2:]
    return float(wall), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--problems", type=int, default=200, help="rollout problems of the base variant")
    parser.add_argument("--eval-problems", type=int, default=100, help="test problems of the base eval variant")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    run = args.run_dir.resolve()
    summary = run / "summary.json"
    if not summary.is_file():
        sys.exit(f"error: {summary} missing; give a finished main job's run_dir")
    last = len(json.loads(summary.read_text())["generators"]) - 1
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "WANDB_MODE": "disabled"}
    rows = []
    for stage, name, overrides in variants(args):
        walls, rss, extra = [], [], {}
        for _ in range(args.reps):
            scratch = Path(tempfile.mkdtemp(prefix="cost_model_"))
            try:
                (scratch / "problems").symlink_to(run / "problems")
                wall, peak = measure(command(stage, run, scratch, overrides, last), env)
                folder = scratch / "iter2" / "rollouts" if stage == "rollouts" else scratch / "eval" / f"iter{last}"
                metrics = json.loads((folder / "manifest.json").read_text())["metrics"]
                extra = {k: metrics.get(k) for k in ("generations", "tokens", "tokens_per_s", "problems")}
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            walls.append(wall)
            rss.append(peak)
        row = {"stage": stage, "variant": name, "overrides": overrides, "seconds": statistics.median(walls),
               "runs": walls, "peak_rss_mb": max(rss), **extra}
        rows.append(row)
        print(f"{stage:8s} {name:12s} {row['seconds']:7.1f} s  peak RSS {row['peak_rss_mb']:6.0f} MB  "
              f"generations {row.get('generations')}  tokens/s {row.get('tokens_per_s') or 0:.0f}", flush=True)
    for stage in ("rollouts", "eval"):
        base = next(r["seconds"] for r in rows if r["stage"] == stage and r["variant"] == "base")
        print(stage, ", ".join(f"{r['variant']} {r['seconds'] / base:.2f}x" for r in rows
                               if r["stage"] == stage and r["variant"] != "base"))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
