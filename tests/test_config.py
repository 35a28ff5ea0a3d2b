"""Every shipped config composes and converts to its typed dataclass, with every group option and
every override the README and the slurm/ scripts use; bad values fail with one line."""

import json
import re
import shlex
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from mucode.config import CONF_DIR, register, schemas
from mucode.stages.collect_rollouts import CollectRolloutsConfig

ROOT = CONF_DIR.parent
STAGES = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONF_DIR.iterdir() if g.is_dir()}


def _compose(stage: str, overrides: list[str]):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=stage, overrides=overrides)
    return OmegaConf.to_object(cfg)


def _documented_commands() -> list[tuple[str, list[str]]]:
    """(stage, overrides) for every `pipelines/<stage>.py ...` command in the README and slurm/."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "slurm").glob("*"))]:
        if not doc.is_file():
            continue
        text = doc.read_text().replace("\\\n", " ")
        for m in re.finditer(r"pipelines/(\w+)\.py([^\n`|;&]*)", text):
            args = [a for a in shlex.split(m.group(2), comments=True) if "=" in a and not a.startswith(("$", "--"))]
            found.append((m.group(1), [a for a in args if "$" not in a]))
    return found


def test_every_stage_has_a_schema_and_a_yaml():
    assert STAGES, "no configs found"
    assert set(STAGES) == set(schemas()), "conf/*.yaml and mucode.config.schemas() disagree"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_yaml_composes_to_its_dataclass(stage):
    assert isinstance(_compose(stage, []), schemas()[stage])


def _stages_using(group: str) -> list[str]:
    """Stages whose defaults list selects an option of `group`."""
    return [s for s in STAGES
            if any(not isinstance(d, str) and group in d for d in OmegaConf.load(CONF_DIR / f"{s}.yaml").defaults)]


# Options with a mandatory value (???) get one here.
REQUIRED = {("task", "jsonl"): ["task.path=problems.jsonl"]}


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(group, option):
    users = _stages_using(group)
    assert users, f"conf/{group}/ is used by no stage"
    for stage in users:
        overrides = [f"{group}={option}", *REQUIRED.get((group, option), [])]
        assert isinstance(_compose(stage, overrides), schemas()[stage])


def test_documented_commands_compose():
    commands = _documented_commands()
    assert any(stage == "expert_iteration" for stage, _ in commands), "README names no main-job command"
    for stage, overrides in commands:
        assert isinstance(_compose(stage, overrides), schemas()[stage]), (stage, overrides)


@pytest.mark.parametrize("override, field", [
    ("task.name=nope", "task.name"),
    ("model.tiny.num_heads=5", "model.tiny.num_heads"),
])
def test_bad_value_is_rejected_naming_the_field(override, field):
    with pytest.raises(Exception, match=re.escape(field)):
        _compose("expert_iteration", [override])


@pytest.mark.parametrize("override, needle", [
    ("task.name=nope", "task.name"),
    ("task=nope", "task/nope"),
    ("task=mbpp task.path=/nonexistent/mbpp.jsonl", "/nonexistent/mbpp.jsonl"),
])
def test_entry_point_bad_input_exits_nonzero_with_one_clear_line(tmp_path, override, needle):
    cmd = [sys.executable, str(ROOT / "pipelines" / "expert_iteration.py"), f"run_dir={tmp_path}", *override.split()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert needle in lines[0], proc.stderr
    assert not list(tmp_path.glob("problems")), "a failed run left a stage folder"


def test_entry_point_malformed_row_exits_nonzero_naming_file_line_and_field(tmp_path):
    (tmp_path / "data").mkdir()
    data = tmp_path / "data" / "train.jsonl"
    good = {"id": "a", "prompt": "Add.", "entry_point": "add", "public_tests": ["assert add(1, 2) == 3"],
            "private_tests": [], "reference": None}
    data.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "public_tests": "oops"}) + "\n")
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "pipelines" / "expert_iteration.py"), f"run_dir={run}", "task=jsonl",
           f"task.path={data.parent}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{data} line 2" in lines[0] and "public_tests" in lines[0], proc.stderr
    assert not (run / "problems").exists()


@pytest.mark.parametrize("task", ["task=humaneval", "task=jsonl task.path=ONE_FILE"])
def test_the_main_job_never_rolls_out_on_a_test_split(tmp_path, task):
    """A task with only a test split (HumanEval, one jsonl file) is for evaluation: the main job stops with
    one line before anything is written, instead of training on the test split (defect 4)."""
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "Add.", "entry_point": "add", "public_tests": [],
                                "private_tests": [], "reference": None}) + "\n")
    cmd = [sys.executable, str(ROOT / "pipelines" / "expert_iteration.py"), f"run_dir={tmp_path / 'run'}",
           *task.replace("ONE_FILE", str(data)).split()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "no train split to roll out on" in lines[0], proc.stderr
    assert not (tmp_path / "run" / "problems").exists()
    with pytest.raises(ValueError, match="never come from the test split"):
        CollectRolloutsConfig(split="test")


def test_the_library_never_imports_a_stage():
    """Imports go pipelines -> mucode.stages -> library; only the Hydra glue and the Slurm submitter,
    which run stages, look the other way."""
    import ast

    package = ROOT / "mucode"
    glue = {package / "config.py", package / "slurm.py"}
    for path in package.rglob("*.py"):
        if package / "stages" in path.parents or path in glue:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("mucode.stages") for n in names), f"{path.relative_to(ROOT)} imports {names}"
