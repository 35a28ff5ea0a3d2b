"""Dependency floors: never below what the code uses, and met by the environment the suite runs in."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# The oldest version of a dependency that has what mucode uses from it.
NEEDED = {
    "datasets": ("4.0", "datasets.List, the feature type of list columns (mucode.records)"),
    "wandb": ("0.19.10", 'wandb.init(reinit="create_new"), one run per stage in one process (mucode.tracking)'),
    "accelerate": ("1.16", "clip_grad_norm_ returning DeepSpeed's global norm (older ones returned None)"),
    "transformers": ("4.56", 'from_pretrained(dtype=...) (mucode.models)'),
    "hydra-core": ("1.3.2", "version_base='1.3' (mucode.config)"),
}


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


def _floor(req: Requirement) -> Version | None:
    floors = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return max(floors, default=None)


@pytest.mark.parametrize("name", sorted(NEEDED))
def test_floor_is_not_below_what_the_code_uses(name):
    floor, (needed, why) = _floor(_requirements()[name]), NEEDED[name]
    assert floor is not None and floor >= Version(needed), f"{name}: floor {floor} < {needed}, needed for {why}"


def test_every_runtime_dependency_has_a_floor_that_this_environment_meets():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in map(Requirement, [*project["dependencies"], *project["optional-dependencies"]["test"]]):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name, floor = req.name, _floor(req)
        assert floor is not None, f"{name} has no >= floor in pyproject.toml"
        installed = Version(re.sub(r"\+.*", "", importlib.metadata.version(name)))
        assert installed in req.specifier, f"{name} {installed} is outside {req.specifier}"
