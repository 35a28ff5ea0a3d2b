"""Every command that README.md, slurm/README.md and the docstrings show works after `make run` (issue 13).

The commands are collected from the ```bash blocks of README.md and slurm/README.md and their code spans
that start like a command, the indented command lines of every docstring in pipelines/*.py and
mucode/**/*.py, and the indented command lines of the header comments of slurm/*.sbatch and slurm/*.sh.
Each one is in RUN (how it runs here and what it must leave), in SKIPPED (why it cannot run on a CPU machine
without network or Slurm), or an sbatch line (composed, not submitted), so a new documented command that is
none of these fails test_every_documented_command_is_run_or_skipped.

test_documented_commands_run (slow: about 2 minutes on 2 shared cores) runs the RUN commands as subprocesses
against a miniature `make run`: the main job as documented (`python pipelines/expert_iteration.py`, 2
iterations as by default) at the size of conftest's `mini`, in <tmp>/base/runs/default, which the families
of commands that need it copy. A family's commands run in order in its own folder, where pipelines/, conf/
and slurm/ are linked so that every relative path means what it means in a checkout; two families run at a
time. A command runs as written, but for: `python` (this interpreter), `make run ...` (the recipe `make -n`
prints), the placeholders in SUBSTITUTIONS, `--dry-run` for the Slurm submitter, and overrides appended at
the end: the miniature's sizes (where the stage's schema has the key and the command does not set it), then
the command's `limits`, which cut a documented size to seconds.

The miniature learns nothing, so it trains its verifier with BCE and relabels with the learned expert (no
correct code, no Bradley-Terry pairs): it cannot show whether a stage command would be refused by the
full-size default run, whose complete stages stop a rerun with other values. That is
test_stage_commands_match_the_default_run, against the default main job's plan, without running anything.
"""

from __future__ import annotations

import ast
import concurrent.futures
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mucode import artifacts
from mucode.config import compose, schemas

ROOT = Path(__file__).resolve().parents[1]
MBPP_SAMPLE = ROOT / "tests" / "data" / "mbpp_sample.jsonl"

# ----------------------------------------------------------------------------------------------------------
# Collecting them.

# What starts a command line (after VAR=value assignments); in prose, only a code span or an indented line.
COMMAND = re.compile(r"^(?:\w+=\S*\s+)*(?:\.venv/bin/)?(?:python3?|torchrun|make|mucode-[a-z]+|sbatch|srun|scontrol"
                     r"|sacct|sudo|bash|slurm/\S+\.sh|wandb|huggingface-cli|pip)(?:\s|$)")


def _command_lines(text: str) -> list[str]:
    """Logical lines: backslash continuations joined, trailing # comments dropped, spaces collapsed."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        quote, cut = None, len(line)
        for i, ch in enumerate(line):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1].isspace()):
                cut = i
                break
        if command := " ".join(line[:cut].split()):
            out.append(command)
    return out


def _indented(text: str) -> str:
    """The indented lines of a docstring or comment block: where commands are shown."""
    return "\n".join(line for line in text.splitlines() if line.startswith("  ") or line.endswith("\\"))


def _from_markdown(text: str) -> list[str]:
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return ([c for block in blocks for c in _command_lines(block)]
            + [c for span in spans if COMMAND.match(c := " ".join(span.split()))])


def _from_python(text: str) -> list[str]:
    docs = [ast.get_docstring(node) or "" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return [c for doc in docs for c in _command_lines(_indented(doc)) if COMMAND.match(c)]


def _from_shell(text: str) -> list[str]:
    comments = [line[1:] for line in text.splitlines() if line.startswith("#") and line[:2] != "#!"
                and not line.startswith("#SBATCH")]
    return [c for c in _command_lines(_indented("\n".join(comments))) if COMMAND.match(c)]


def documented_commands() -> dict[str, list[str]]:
    """Every documented command -> the files that show it."""
    read = [(_from_markdown, [ROOT / "README.md", ROOT / "slurm" / "README.md"]),
            (_from_python, sorted([*ROOT.glob("pipelines/*.py"), *ROOT.glob("mucode/**/*.py")])),
            (_from_shell, sorted([*ROOT.glob("slurm/*.sbatch"), *ROOT.glob("slurm/*.sh")]))]
    found: dict[str, list[str]] = {}
    for parse, paths in read:
        for path in paths:
            for command in parse(path.read_text()):
                found.setdefault(command, []).append(str(path.relative_to(ROOT)))
    return found


# ----------------------------------------------------------------------------------------------------------
# What is not run, and why.

HUB_GPU = "needs the Hugging Face Hub (network) and a GPU"
NAME = "a name in prose, not a command line"
SYNOPSIS = "a synopsis; the examples after it are run"
CLUSTER = "needs root to run Slurm daemons (tests/test_slurm.py starts this cluster)"
SKIPPED = {
    "make test": "is this test suite",
    "make setup": "installs packages (network)",
    "make setup CONSTRAINTS= EXTRAS=test,vllm": "installs CUDA torch and vLLM (network; vLLM needs a GPU)",
    "huggingface-cli login": "logs in to the Hugging Face Hub (network, a token)",
    "wandb sync": "uploads to wandb (network)",
    "python -m mucode.slurm": NAME + " (its full commands are run as dry runs)",
    "slurm/iterate.sh": NAME + " (its full commands are run as dry runs)",
    "torchrun": NAME,
    "srun": NAME,
    "srun --ntasks-per-node=1": NAME,
    "srun --label": NAME,
    "sacct": NAME,
    "scontrol show hostnames $SLURM_JOB_NODELIST": "needs a Slurm job",
    "scontrol requeue $SLURM_JOB_ID": "needs a Slurm job",
    "scontrol show job ID": "needs a Slurm cluster",
    "sbatch --array=5 --export=ALL,MUCODE_SHARDS=8 ...": "needs a Slurm cluster",
    "python -m mucode.slurm [options] [--] MAIN_JOB_OVERRIDES... (slurm/iterate.sh runs this)": SYNOPSIS,
    'slurm/iterate.sh [--shards N] [--nodes K] [--stages LIST] [--after JOB] [--sbatch "OPTS"]': SYNOPSIS,
    "python -S -s -B /run/mucode/child/forkserver.py program '{\"memory_mb\": 4096, ...}'":
        "the sandbox's own server: mucode.sandbox starts it, a user never does",
    "python -S -s -B /run/mucode/child/forkserver.py judge '{\"memory_mb\": 4096, ...}'":
        "the sandbox's own server: mucode.sandbox starts it, a user never does",
    "sudo bash slurm/local-cluster.sh install": CLUSTER,
    "sudo SLURM_LOCAL_NODES=2 bash slurm/local-cluster.sh up": CLUSTER,
    "sudo bash slurm/local-cluster.sh up": CLUSTER,
    "sudo bash slurm/local-cluster.sh smoke": CLUSTER,
    "sudo bash slurm/local-cluster.sh status": CLUSTER,
    "sudo bash slurm/local-cluster.sh down": CLUSTER,
    ".venv/bin/python pipelines/expert_iteration.py experiment=llama1b_mbpp run_dir=runs/mbpp-1b "
    "task.path=data/mbpp.jsonl": HUB_GPU + " (tests/test_presets.py checks the preset's values)",
    "python pipelines/expert_iteration.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl model=hub "
    "model.name_or_path=meta-llama/Llama-3.2-1B-Instruct": HUB_GPU,
    ".venv/bin/python pipelines/expert_iteration.py experiment=llama1b_mbpp run_dir=runs/llama1b "
    "task.path=mbpp.jsonl": HUB_GPU + " (tests/test_presets.py checks the preset's values)",
    ".venv/bin/python pipelines/expert_iteration.py experiment=smollm2_mbpp run_dir=runs/smollm2 "
    "task.path=mbpp.jsonl": HUB_GPU + " (tests/test_presets.py checks the preset's values)",
    "python pipelines/evaluate.py run_dir=runs/mbpp name=iter2 model=hub eval.search.sampling.backend=vllm":
        "needs a GPU (vLLM)",
    "HF_TOKEN=hf_... python pipelines/export.py run_dir=runs/x push=true generator_repo_id=me/mucode-gen "
    "verifier_repo_id=me/mucode-verifier": "pushes to the Hub (network, a token); its dry run is run",
    "torchrun --nproc_per_node 4 pipelines/train_generator.py run_dir=runs/x model=hub "
    "sft.train.deepspeed=conf/deepspeed/zero3.json sft.train.precision=bf16": HUB_GPU + "s (4, DeepSpeed ZeRO-3)",
    "torchrun --nproc_per_node 4 pipelines/train_verifier.py run_dir=runs/x model=hub "
    "verifier.train.deepspeed=conf/deepspeed/zero2.json verifier.train.precision=bf16": HUB_GPU + "s (4, DeepSpeed)",
    "torchrun --nproc_per_node 2 pipelines/warm_start.py run_dir=runs/x warmup.deepspeed=conf/deepspeed/zero2.json":
        "2 processes under DeepSpeed, minutes on 2 cores: tests/test_distributed.py runs torchrun + DeepSpeed",
    "python pipelines/expert_iteration.py run_dir=runs/a iterations=3 verifier.loss=bce relabel.mode=rft":
        "rft trains only on rollouts that end correct, and the miniature's untrained model writes none, so its SFT "
        "has no examples (the same main job with the learned expert runs here; tests/test_relabel.py runs rft)",
}

# sbatch lines run a stage's script with Hydra overrides: composed here (no cluster), not submitted.
SBATCH = re.compile(r"\bsbatch\b.*?\sslurm/(\w+)\.sbatch((?:\s+[^\s)]+)*)\)?$")
SBATCH_STAGE = {"merge_rollouts": "collect_rollouts"}

# ----------------------------------------------------------------------------------------------------------
# What is run, and what it must leave.


@dataclasses.dataclass(frozen=True)
class Run:
    """A documented command as run here: its family (the folder it runs in, after the family's earlier
    commands), the paths it must leave there, text its stdout must hold, and `limits`: arguments appended
    last, which cut a documented size to seconds."""

    family: str
    expect: tuple[str, ...] = ()
    stdout: str = ""
    limits: tuple[str, ...] = ()


def _default(*paths: str) -> Run:
    return Run("default", tuple(f"runs/default/{p}" for p in paths))


def _new(*paths: str, limits: tuple[str, ...] = ()) -> Run:
    return Run("new", tuple(f"runs/default/{p}" for p in paths), limits=limits)


DRY_RUN = Run("tools", stdout="report\t")
RUN = {
    # The stand-in for `make run`, built first in the family `base`.
    "python pipelines/expert_iteration.py": Run("base", ("runs/default/report.md", "runs/default/eval/iter2")),
    # New runs of the main job: runs/a with 1 iteration, the sweep with the stages before the first iteration.
    'make run ARGS="run_dir=runs/a seed=1 verifier.loss=bce"':
        Run("runs-a", ("runs/a/iter1/sft/model", "runs/a/report.md"), limits=("iterations=1",)),
    "python pipelines/expert_iteration.py run_dir=runs/a seed=1": Run("runs-a", ("runs/a/report.md",),
                                                                      limits=("iterations=1",)),
    'make run ARGS="--multirun seed=0,1,2"':
        Run("sweep", tuple(f"runs/default/seed={s}/report.md" for s in range(3)), limits=("iterations=0",)),
    # The Slurm submitter as a dry run: the sbatch commands of the whole plan, printed.
    '.venv/bin/python -m mucode.slurm --shards 8 --train-sbatch "--gpus-per-node=4" --rollout-sbatch "--gpus=1" '
    "experiment=llama8b_mbpp run_dir=runs/llama8b task.path=mbpp.jsonl": DRY_RUN,
    'python -m mucode.slurm --shards 8 --nodes 2 --sbatch "--partition=gpu --account=me" run_dir=runs/x model=hub '
    "model.name_or_path=meta-llama/Llama-3.2-1B-Instruct rollout.samples=15": DRY_RUN,
    "python -m mucode.slurm --shards 8 run_dir=runs/x ...": DRY_RUN,
    "slurm/iterate.sh --shards 8 --nodes 2 run_dir=runs/x iterations=3 rollout.samples=15":
        Run("tools", stdout="iter3/sft\t"),
    'slurm/iterate.sh --shards 8 --nodes 2 --sbatch "--partition=gpu --account=me" --train-sbatch '
    '"--gpus-per-node=8 --cpus-per-task=64" --rollout-sbatch "--gpus=1" run_dir=runs/x iterations=2 model=hub '
    "model.name_or_path=meta-llama/Llama-3.2-1B-Instruct rollout.samples=15": DRY_RUN,
    # The console scripts.
    "mucode-suite": Run("tools", stdout="split sizes", limits=("--size", "400")),
    "python -m mucode.tasks.embedded [--seed 0] [--size 8000]": Run("tools", stdout="split sizes",
                                                                     limits=("--size", "400")),
    "mucode-exec samples.jsonl -o results.jsonl --timeout 3 --workers 2": Run("tools", ("results.jsonl",)),
    # After `make run`: the main job again, then every stage alone with the main job's own values, so that it
    # finds its folder complete (and returns its metrics); rollout shards of a complete stage do nothing.
    "make run": _default("summary.json"),
    "make run OMP_NUM_THREADS=1": _default("summary.json"),
    "python pipelines/prepare.py run_dir=runs/default": _default("problems/test"),
    "python pipelines/warm_start.py run_dir=runs/default": _default("warmup/model"),
    "python pipelines/collect_rollouts.py run_dir=runs/default iteration=1": _default("iter1/rollouts/episodes"),
    "python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=0/4": _default("iter1/rollouts"),
    "python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=2/4": _default("iter1/rollouts"),
    "python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=0/4 merge=true":
        _default("iter1/rollouts"),
    "python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 merge=true": _default("iter1/rollouts"),
    "python pipelines/train_verifier.py run_dir=runs/default": _default("iter1/verifier/model"),
    "python pipelines/train_verifier.py run_dir=runs/default iteration=2": _default("iter2/verifier/model"),
    "python pipelines/relabel.py run_dir=runs/default iteration=1": _default("iter1/relabel/examples"),
    "python pipelines/train_generator.py run_dir=runs/default iteration=1": _default("iter1/sft/model"),
    "python pipelines/evaluate.py run_dir=runs/default name=iter2": _default("eval/iter2/results.jsonl"),
    "python pipelines/report.py run_dir=runs/default": _default("report.md", "summary.json"),
    # After `make run`: a stage with other values, into a folder of its own beside the main job's.
    "python pipelines/warm_start.py run_dir=runs/default warmup.max_steps=900 out_dir=runs/default/warmup-900":
        _new("warmup-900/model", limits=("warmup.max_steps=2",)),
    "python pipelines/train_verifier.py run_dir=runs/default iteration=2 verifier.loss=bce "
    "out_dir=runs/default/iter2/verifier-bce": _new("iter2/verifier-bce/model"),
    "python pipelines/train_verifier.py run_dir=runs/default verifier.head=ratio verifier.sft_weight=0.1 "
    "out_dir=runs/default/iter1/verifier-ratio": _new("iter1/verifier-ratio/model/mucode_verifier.json"),
    "python pipelines/train_verifier.py run_dir=runs/default verifier.mutants=4 "
    "out_dir=runs/default/iter1/verifier-mutants": _new("iter1/verifier-mutants/model"),
    "python pipelines/relabel.py run_dir=runs/default iteration=1 relabel.mode=rft "
    "out_dir=runs/default/iter1/relabel-rft": _new("iter1/relabel-rft/examples"),
    "python pipelines/train_generator.py run_dir=runs/default iteration=2 sft.init=previous sft.replay=0 "
    "out_dir=runs/default/iter2/sft-previous": _new("iter2/sft-previous/model"),
    "python pipelines/evaluate.py run_dir=runs/default name=base eval.limit=200 eval.search.searches=10 "
    "out_dir=runs/default/eval/base-s10": _new("eval/base-s10/results.jsonl",
                                               limits=("eval.limit=2", "eval.search.searches=2")),
    # The finished run used: another model evaluated, the models exported, problems solved.
    "python pipelines/evaluate.py run_dir=runs/default name=other generator=path/to/model verifier=null":
        Run("use", ("runs/default/eval/other/results.jsonl",)),
    "python pipelines/export.py run_dir=runs/default":
        Run("use", ("runs/default/export/generator/README.md", "runs/default/export/verifier/README.md")),
    "python pipelines/export.py run_dir=runs/x which=generator iteration=2 generator_repo_id=me/mucode-gen push=true "
    "dry_run=true": Run("use", ("runs/default/export/generator/README.md",), "not pushed (dry run)"),
    "python pipelines/solve.py problems=my_problems.jsonl": Run("use", ("solutions.jsonl",)),
    "python pipelines/solve.py problems=my.jsonl generator=runs/x/iter2/sft/model verifier=runs/x/iter2/verifier/model "
    "out=answers.jsonl search.candidates=8": Run("use", ("answers.jsonl",)),
    "python pipelines/solve.py problems=my.jsonl generator=path/to/model verifier=null":
        Run("use", ("solutions.jsonl",)),
    # A run on MBPP (the sample in tests/data); the miniature's generator 2 and R_2 stand in for a Hub model's.
    "python pipelines/prepare.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl model=hub":
        Run("mbpp", ("runs/mbpp/problems/train", "runs/mbpp/problems/test")),
    "python pipelines/prepare.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl model=hub "
    "eval_tasks=[mbpp,humaneval]": Run("mbpp", ("runs/mbpp/problems-humaneval/test",)),
    "python pipelines/evaluate.py run_dir=runs/mbpp name=iter2 task=mbpp eval.tasks=[mbpp,humaneval]":
        Run("mbpp", ("runs/mbpp/eval/iter2/results.jsonl", "runs/mbpp/eval-humaneval/iter2/results.jsonl")),
}

# The families that start from the miniature run: what each copies of <tmp>/base (from -> to).
COPIES = {
    "default": {"runs/default": "runs/default"},
    "new": {"runs/default": "runs/default"},
    "use": {"runs/default": "runs/default"},
    "mbpp": {f"runs/default/iter2/{s}": f"runs/mbpp/iter2/{s}" for s in ("sft", "verifier")},
}

# The order the families start in, two at a time: the base and a family of about its length, then the
# others longest first (as measured), so that both workers end at about the same time.
ORDER = ["base", "runs-a", "use", "default", "new", "tools", "mbpp", "sweep"]

# Placeholders -> what the test has (paths relative to the family folder).
SUBSTITUTIONS = [
    ("task.path=data/mbpp.jsonl", f"task.path={MBPP_SAMPLE}"),
    ("task.path=mbpp.jsonl", f"task.path={MBPP_SAMPLE}"),
    ("path/to/model", "runs/default/iter1/sft/model"),
    ("runs/x ...", "runs/x"),
    ("runs/x", "runs/default"),  # "a run of yours": the finished miniature, or a new run where there is none
    ("[--seed 0] [--size 8000]", "--seed 0 --size 8000"),
]


def _substituted(command: str) -> str:
    for old, new in SUBSTITUTIONS:
        command = command.replace(old, new)
    return command


def _stage_overrides(command: str) -> tuple[str, list[str]] | None:
    """(stage, overrides) of a `pipelines/<stage>.py` command, placeholders substituted; else None."""
    words = shlex.split(_substituted(command))
    at = next((i for i, w in enumerate(words) if re.fullmatch(r"pipelines/\w+\.py", w)), None)
    return None if at is None else (Path(words[at]).stem, [w for w in words[at + 1:] if "=" in w])


# ----------------------------------------------------------------------------------------------------------
# The checks that run nothing.

def test_every_documented_command_is_run_or_skipped():
    found = documented_commands()
    assert "python pipelines/expert_iteration.py" in found and len(found) > 60, sorted(found)
    listed = set(RUN) | set(SKIPPED)
    new = {c: where for c, where in found.items() if c not in listed and not SBATCH.search(c)}
    assert not new, ("documented commands that this test neither runs (RUN) nor skips with a reason (SKIPPED): "
                     + "; ".join(f"{c!r} in {', '.join(w)}" for c, w in new.items()))
    gone = listed - set(found)
    assert not gone, f"RUN or SKIPPED name commands that no file shows any more: {sorted(gone)}"
    assert not set(RUN) & set(SKIPPED)


def test_commands_not_run_compose():
    """The commands that are not run still give their stage a config it accepts: every sbatch line (its
    script's stage) and every skipped `pipelines/<stage>.py` command."""
    checked, errors = 0, []
    for command in documented_commands():
        if match := SBATCH.search(command):
            if not (ROOT / "slurm" / f"{match.group(1)}.sbatch").is_file():
                errors.append(f"{command}: no such script")
                continue
            stage = SBATCH_STAGE.get(match.group(1), match.group(1))
            overrides = [a for a in shlex.split(_substituted(match.group(2))) if "=" in a]
        elif command in SKIPPED and (found := _stage_overrides(command)):
            stage, overrides = found
        else:
            continue
        checked += 1
        try:
            compose(stage, overrides)
        except Exception as e:  # any error names the command
            errors.append(f"{command}: {e}")
    assert checked > 20 and not errors, "\n".join(errors)


def test_stage_commands_match_the_default_run():
    """After the full-size `make run`, every documented stage command on runs/default either writes a
    folder the main job does not write, or finds its folder complete with the very values it would run
    with (it returns that stage's metrics): none is refused ("complete, but it would now run with ...")."""
    from mucode.stages.collect_rollouts import PLACEMENT
    from mucode.stages.evaluate import FINAL
    from mucode.stages.expert_iteration import plan

    steps = plan(compose("expert_iteration", []))
    where = ("run_dir", "iteration", "name", "out_dir")  # the fields that choose a stage's folder
    checked, refused = 0, []
    for command in documented_commands():
        found = _stage_overrides(command) if "run_dir=runs/default" in command.split() else None
        if found is None or found[0] in ("expert_iteration", "solve"):
            continue
        stage, overrides = found
        config = compose(stage, overrides)
        same = [s for s in steps if s.stage == stage and all(getattr(s.config, f, None) == getattr(config, f, None)
                                                              for f in where)]
        if not same:
            continue
        checked += 1
        if getattr(config, "verifier", None) == FINAL:  # evaluate resolves it to the run's final verifier
            config = dataclasses.replace(config, verifier=same[0].config.verifier)
        exclude = PLACEMENT if stage == "collect_rollouts" else ()  # where a shard ran, not what it computed
        old = artifacts.leaves(artifacts.config_values(same[0].config, exclude))
        new = artifacts.leaves(artifacts.config_values(config, exclude))
        changed = sorted(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in {*old, *new} if old.get(k) != new.get(k)
                         and not any(part in artifacts.UNCHECKED for part in k.split(".")))
        if changed:
            refused.append(f"{command}: after make run, {same[0].name} is complete with {', '.join(changed)}")
    assert checked > 10 and not refused, "\n".join(refused)


# ----------------------------------------------------------------------------------------------------------
# Running them.

def _miniature(mini: list[str]) -> dict[str, str]:
    """conftest's miniature as the default `make run`: 2 iterations, the run's own task only, no
    checkpoints, fewer problems and steps."""
    values = dict(o.split("=", 1) for o in mini)
    for key in ["iterations", "eval.tasks", *(k for k in values if k.endswith("checkpoint_every"))]:
        values.pop(key, None)
    values |= {"eval.limit": "2", "rollout.problems_per_iteration": "4", "warmup.max_steps": "2",
               "verifier.train.max_steps": "2", "sft.train.max_steps": "2"}
    # solve searches as the main job evaluates (its `search` is the eval recipe's)
    return values | {k.removeprefix("eval."): v for k, v in values.items() if k.startswith("eval.search.")}


def _translate(command: str) -> tuple[list[str], dict[str, str]]:
    """A documented command as argv (placeholders substituted, `python` this interpreter) + its environment."""
    words, env = shlex.split(_substituted(command)), {}
    while re.fullmatch(r"\w+=.*", words[0]):  # VAR=value before the command
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if words[0] == "make":  # the recipe make runs, without (re)installing the environment
        env |= dict(w.split("=", 1) for w in words[1:] if "=" in w and not w.startswith("ARGS="))
        recipe = subprocess.run(["make", "-s", "-n", "-o", ".venv/bin/.installed", *words[1:]], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        assert "\n" not in recipe, f"{command}: make runs more than one command: {recipe}"
        words = shlex.split(recipe)
    if words[0] in ("python", "python3", ".venv/bin/python"):
        words[0] = sys.executable
    elif words[0].startswith("mucode-"):
        words[0] = str(Path(sys.executable).with_name(words[0]))
    if words[1:3] == ["-m", "mucode.slurm"] or words[0] == "slurm/iterate.sh":
        words.append("--dry-run")  # no cluster here: print the sbatch commands
        env["MUCODE_PYTHON"] = sys.executable
    return words, env


def _argv(command: str, mini: dict[str, str], keys: dict[str, set[str]]) -> tuple[list[str], dict[str, str]]:
    """The command's argv + the miniature's overrides that its stage has and it does not set + its limits."""
    argv, env = _translate(command)
    script = next((a for a in argv if a.startswith("pipelines/")), None)
    if script is not None:
        given = {a.split("=", 1)[0] for a in argv if "=" in a}
        argv += [f"{k}={v}" for k, v in mini.items() if k in keys[Path(script).stem] and k not in given]
    return argv + list(RUN[command].limits), env


def _setup_family(folder: Path, family: str, base: Path) -> None:
    """A family's folder: the checkout's pipelines/, conf/ and slurm/ linked, the input files the commands
    name, and the family's copies of the miniature run."""
    folder.mkdir(parents=True)
    for name in ("pipelines", "conf", "slurm"):
        (folder / name).symlink_to(ROOT / name)
    rows = [{"id": "ok", "program": "def f(x):\n    return x + 1", "tests": ["assert f(1) == 2"]},
            {"id": "wrong", "program": "def f(x):\n    return x", "tests": ["assert f(1) == 2"]}]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for src, dst in COPIES.get(family, {}).items():
        shutil.copytree(base / src, folder / dst, symlinks=True)
    if family in COPIES:
        from mucode.records import Problem, read_records, write_jsonl

        problems = read_records(base / "runs/default/problems/test", Problem)[:2]
        for name in ("my_problems.jsonl", "my.jsonl"):
            write_jsonl(problems, folder / name)


def _run_family(folder: Path, commands: list[str], mini: dict[str, str], keys: dict[str, set[str]],
                env: dict[str, str]) -> list[dict]:
    """Run a family's commands in order in `folder`: one record each; the first that fails ends the family."""
    records = []
    for command in commands:
        spec, (argv, extra) = RUN[command], _argv(command, mini, keys)
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=folder, env=env | extra, capture_output=True, text=True, timeout=600)
        problems = [f"exit {done.returncode}"] if done.returncode else []
        problems += [f"{p} not written" for p in spec.expect if not (folder / p).exists()]
        problems += [f"{spec.stdout!r} not in its output"] if spec.stdout not in done.stdout else []
        records.append({"command": command, "seconds": time.perf_counter() - start, "problems": problems,
                        "argv": shlex.join(argv), "tail": (done.stdout + done.stderr)[-3000:]})
        if problems:
            break
    return records


@pytest.mark.slow
def test_documented_commands_run(tmp_path, mini):
    values = _miniature(mini)
    keys = {stage: set(artifacts.leaves(artifacts.config_values(compose(stage, [])))) for stage in schemas()}
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}  # two commands at a time on 2 cores
    families: dict[str, list[str]] = {}
    for command, spec in RUN.items():
        families.setdefault(spec.family, []).append(command)
    start = time.perf_counter()

    def family(name: str) -> list[dict]:
        if name in COPIES and any(r["problems"] for r in futures["base"].result()):
            return []
        _setup_family(tmp_path / name, name, tmp_path / "base")
        return _run_family(tmp_path / name, families[name], values, keys, env)

    assert sorted(ORDER) == sorted(families)
    futures: dict[str, concurrent.futures.Future] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for name in ORDER:
            futures[name] = pool.submit(family, name)
        results = [r for future in futures.values() for r in future.result()]
    print(f"{len(results)} commands in {time.perf_counter() - start:.0f} s")
    print("\n".join(f"{r['seconds']:6.1f} s  {r['command']}" for r in results))
    failed = [r for r in results if r["problems"]]
    assert not failed, "\n\n".join(f"{r['command']}: {'; '.join(r['problems'])}\nran: {r['argv']}\n{r['tail']}"
                                   for r in failed)
    assert len(results) == len(RUN), f"not run: {set(RUN) - {r['command'] for r in results}}"
