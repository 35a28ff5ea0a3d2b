"""Submit the main job's plan as Slurm jobs: one job per stage (an array for rollouts), each started
only when the jobs it needs ended OK (--dependency=afterok), with the same configs as the main job.

    python -m mucode.slurm [options] [--] MAIN_JOB_OVERRIDES...     (slurm/iterate.sh runs this)
    python -m mucode.slurm --shards 8 --nodes 2 --sbatch "--partition=gpu --account=me" \
        run_dir=runs/x model=hub model.name_or_path=meta-llama/Llama-3.2-1B-Instruct rollout.samples=15

The overrides are the main job's (conf/expert_iteration.yaml): the plan is
mucode.stages.expert_iteration.plan, and each step's config becomes the overrides of its own stage
(only the fields that differ from conf/<stage>.yaml), checked to compose back to the very same config
before anything is submitted. Each job runs slurm/<stage>.sbatch with them, so every stage writes the
config.yaml the main job would write. Steps already complete (their manifest) are not submitted and
nothing waits for them: resubmitting a chain after a failure submits what is left.

Prints "step<TAB>job id" lines (also appended to RUN_DIR/slurm/jobs.tsv); logs go to RUN_DIR/slurm/.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import re
import shlex
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any

from mucode import artifacts
from mucode.config import USER_ERRORS, check_overrides, compose

TRAINING = ("warm_start", "train_verifier", "train_generator")
SBATCH_OPTIONS = ("--sbatch", "--train-sbatch", "--rollout-sbatch", "--eval-sbatch")
SAFE = re.compile(r"[A-Za-z_/.~][\w./@:+~-]*")
KEYWORDS = {"null", "true", "false", "inf", "nan", "none"}


@functools.cache
def _defaults(stage: str) -> dict[str, Any]:
    """Dotted key -> value of conf/<stage>.yaml composed without overrides (once per stage)."""
    return artifacts.leaves(artifacts.config_values(compose(stage)))


def value_text(value: Any) -> str:
    """A value in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    text = str(value)
    if SAFE.fullmatch(text) and text.lower() not in KEYWORDS:
        return text
    # Hydra's quoted strings: a backslash escapes only a quote or the end of the string; OmegaConf reads
    # \${ as a literal ${ instead of an interpolation.
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text.replace("${", "\\${"))
    return "'" + text.replace("'", "\\'") + "'"


def overrides(stage: str, config: Any) -> list[str]:
    """The overrides of conf/<stage>.yaml that give `config`, checked to compose back to it exactly."""
    default = _defaults(stage)
    out = [f"{key}={value_text(value)}" for key, value in artifacts.leaves(artifacts.config_values(config)).items()
           if default.get(key, object()) != value]
    if compose(stage, out) != config:
        raise ValueError(f"stage {stage}: the overrides {out} do not give back its config; "
                         "a value cannot be written as a Hydra override")
    return out


def complete(layout: artifacts.RunLayout, step: Any) -> bool:
    """The step's stage folder(s) say it is done, with the config it would run with now (else one line
    saying what changed, as the stage itself would stop); the report is always rerun: it is cheap."""
    from mucode.stages.collect_rollouts import PLACEMENT

    if step.stage == "report":
        return False
    stage = importlib.import_module(f"mucode.stages.{step.stage}")
    if hasattr(stage, "folders"):  # a stage that writes several folders says which
        folders = [(f.path, f.config, f.exclude) for f in stage.folders(step.config).values()]
    else:
        folders = [(layout.root / step.name, step.config, PLACEMENT if step.stage == "collect_rollouts" else ())]
    done = True
    for folder, config, exclude in folders:
        if (manifest := artifacts.read_manifest(folder)) is None:
            done = False
            continue
        artifacts.check_unchanged(folder, manifest, artifacts.config_values(config, exclude))
    return done


class Submitter:
    """sbatch calls for a plan, or their command lines (dry run), with the job ids they return."""

    def __init__(self, args: argparse.Namespace, logs: Path) -> None:
        self.args, self.logs, self.fake = args, logs, 1000

    def sbatch(self, name: str, needs: list[str], options: list[str], script: str, stage_args: list[str]) -> str:
        cmd = ["sbatch", "--parsable", "--kill-on-invalid-dep=yes", f"--job-name=mucode-{name.replace('/', '-')}",
               f"--output={self.logs}/%x-%j.out", *shlex.split(self.args.sbatch)]
        after = needs or ([self.args.after] if self.args.after else [])
        if after:
            cmd.append("--dependency=afterok:" + ":".join(after))
        cmd += [*options, f"slurm/{script}.sbatch", *stage_args]
        if self.args.dry_run:
            print(shlex.join(cmd), file=sys.stderr)
            self.fake += 1
            return str(self.fake)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"sbatch failed for {name} (exit {done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]


def submit(args: argparse.Namespace, main_overrides: list[str]) -> list[tuple[str, str]]:
    """Submit every incomplete step of the main job's plan; returns (step, job id) in order."""
    from mucode.stages.expert_iteration import plan

    config = check_overrides("expert_iteration", main_overrides)
    layout = artifacts.RunLayout(config.run_dir)
    wanted = set(args.stages.split(",")) if args.stages else None
    submitter = Submitter(args, layout.root / "slurm")
    if not args.dry_run:
        submitter.logs.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, str] = {}
    printed: list[tuple[str, str]] = []
    for step in plan(config):
        if (wanted is not None and step.stage not in wanted) or complete(layout, step):
            continue
        needs = [jobs[n] for n in step.needs if n in jobs]
        stage_args = overrides(step.stage, step.config)
        if step.stage == "collect_rollouts":
            shards = f"--export=ALL,MUCODE_SHARDS={args.shards}"
            array = submitter.sbatch(step.name, needs, [f"--array=0-{args.shards - 1}", shards,
                                                        *shlex.split(args.rollout_sbatch)],
                                     "collect_rollouts", stage_args)
            printed.append((f"{step.name}/shards", array))
            needs, script, options = [array], "merge_rollouts", [shards]
        elif step.stage in TRAINING:
            nodes = 1 if step.stage == "warm_start" else args.nodes
            script, options = step.stage, [f"--nodes={nodes}", *shlex.split(args.train_sbatch)]
        else:
            extra = args.eval_sbatch if step.stage == "evaluate" else ""
            script, options = step.stage, shlex.split(extra)
        jobs[step.name] = submitter.sbatch(step.name, needs, options, script, stage_args)
        printed.append((step.name, jobs[step.name]))
    if not args.dry_run:
        with open(submitter.logs / "jobs.tsv", "a") as f:
            f.writelines(f"{name}\t{job}\n" for name, job in printed)
    return printed


def parser() -> argparse.ArgumentParser:
    from mucode.config import STAGES

    p = argparse.ArgumentParser(prog="python -m mucode.slurm", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, default=4, help="rollout array size (default 4)")
    p.add_argument("--nodes", type=int, default=1, help="nodes of each verifier / generator training job")
    p.add_argument("--stages", default="", help="submit only these stages (comma-separated: "
                   + ",".join(s for s in STAGES if s not in ("solve", "export", "expert_iteration")) + ")")
    p.add_argument("--after", default="", help="make the first jobs wait for this job (afterok)")
    p.add_argument("--sbatch", default="", help='sbatch options for every job, e.g. "--partition=gpu"')
    p.add_argument("--train-sbatch", default="", help='for the training jobs, e.g. "--gpus-per-node=8"')
    p.add_argument("--rollout-sbatch", default="", help='for each rollout array task, e.g. "--gpus=1"')
    p.add_argument("--eval-sbatch", default="", help="for each evaluation job")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch commands; submit nothing")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the main job (conf/expert_iteration.yaml)")
    return p


def _glued(argv: list[str]) -> list[str]:
    """`--train-sbatch --gpus=1` as `--train-sbatch=--gpus=1`: argparse would read the value as an option."""
    out, rest = [], iter(argv)
    for arg in rest:
        out.append(f"{arg}={next(rest, '')}" if arg in SBATCH_OPTIONS else arg)
    return out


def main(argv: list[str] | None = None) -> None:
    from mucode.config import STAGES

    args = parser().parse_args(_glued(sys.argv[1:] if argv is None else argv))
    if args.shards < 1 or args.nodes < 1:
        parser().error("--shards and --nodes take a number >= 1")
    unknown = set(filter(None, args.stages.split(","))) - set(STAGES)
    if unknown:
        parser().error(f"--stages: unknown stage {', '.join(sorted(unknown))} (see --help)")
    try:
        for name, job in submit(args, args.overrides):
            print(f"{name}\t{job}")
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
