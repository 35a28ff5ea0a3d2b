"""The main job: the whole muCode expert-iteration loop, each stage in its own folder of run_dir.

    python pipelines/expert_iteration.py                        # embedded default, tiny model, CPU
    python pipelines/expert_iteration.py run_dir=runs/a seed=1  # any Hydra override

Rerun the same command after a crash or a kill: completed stages are skipped (see
mucode/stages/expert_iteration.py; the same plan as Slurm jobs: python -m mucode.slurm).
"""

from mucode.config import stage_main
from mucode.stages.expert_iteration import ExpertIterationConfig, run


@stage_main("expert_iteration")
def main(config: ExpertIterationConfig) -> None:
    run(config)


if __name__ == "__main__":
    main()
