"""Stage collect_rollouts: multi-turn episodes with generator i-1.

    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1
    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=0/4   # Slurm array task
    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=0/4 merge=true

Reads run_dir/problems/<split> and the generator; writes run_dir/iter{i}/rollouts/ (see
mucode/stages/collect_rollouts.py).
"""

from mucode.config import stage_main
from mucode.stages.collect_rollouts import CollectRolloutsConfig, run


@stage_main("collect_rollouts")
def main(config: CollectRolloutsConfig) -> None:
    print(run(config))


if __name__ == "__main__":
    main()
