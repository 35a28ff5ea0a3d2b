"""One home for every recipe value: a stage run alone gets the recipe the main job gives it, the main
job's stage configs differ from the stage YAMLs only in where they read and write, and the YAMLs
repeat no default."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from mucode import recipes, slurm
from mucode.config import CONF_DIR, STAGES, compose, schemas
from mucode.stages.expert_iteration import plan

RECIPE = {"warm_start": "warmup", "collect_rollouts": "rollout", "train_verifier": "verifier",
          "relabel": "relabel", "train_generator": "sft", "evaluate": "eval"}
# What the main job sets per step beyond the stage YAML: which iteration, folder, generator and
# verifier, and the wandb group (the run's name).
WHERE = {"iteration", "out_dir", "name", "verifier", "tracking.group"}


@pytest.fixture(scope="module")
def steps():
    return plan(compose("expert_iteration", ["final_rollouts=true"]))


def test_every_stage_alone_has_the_recipe_the_main_job_gives_it(steps):
    seen = set()
    for step in steps:
        if step.stage in RECIPE:
            field = RECIPE[step.stage]
            assert getattr(compose(step.stage), field) == getattr(step.config, field), step.name
            seen.add(step.stage)
    assert seen == set(RECIPE)


def test_the_main_jobs_stage_configs_differ_from_the_stage_yamls_only_in_where(steps):
    for step in steps:
        keys = {arg.split("=", 1)[0] for arg in slurm.overrides(step.stage, step.config)}
        assert keys <= WHERE, (step.name, keys - WHERE)


def test_recipes_are_what_the_main_job_and_stages_default_to():
    main = compose("expert_iteration")
    assert main.warmup == recipes.warm_start() and main.rollout == recipes.rollouts()
    assert main.verifier == recipes.verifier() and main.sft == recipes.iteration_sft()
    assert main.eval == recipes.evaluation()
    assert compose("solve").search == recipes.evaluation().search
    assert main.rollout.sampling == main.eval.search.sampling == recipes.sampling()
    # the library defaults are neutral: a recipe changes them on purpose
    assert dataclasses.replace(recipes.warm_start()) != type(recipes.warm_start())()


@pytest.mark.parametrize("stage", STAGES)
def test_stage_yamls_repeat_no_default(stage):
    """A value in conf/<stage>.yaml is there because it differs from the schema (none today)."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{stage}.yaml"))
    values = {k: v for k, v in raw.items() if k not in ("defaults", "hydra")}
    default = OmegaConf.to_container(OmegaConf.structured(schemas()[stage]), enum_to_str=True)
    same = {k: v for k, v in values.items() if default.get(k) == v}
    assert not same, f"conf/{stage}.yaml repeats defaults: {same}"
