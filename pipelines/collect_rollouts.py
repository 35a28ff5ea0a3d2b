"""Stage: collect multi-turn episodes with generator i-1 (SPEC §1 step 1).

    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1
    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=0/4   # Slurm array task
    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=0/4 merge=true

Reads run_dir/problems/<split> and the generator; writes run_dir/iter{i}/rollouts/ (see mucode/rollouts.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mucode.config import stage_main  # noqa: E402
from mucode.rollouts import CollectRolloutsConfig, collect_rollouts  # noqa: E402


@stage_main("collect_rollouts")
def main(config: CollectRolloutsConfig) -> None:
    print(collect_rollouts(config))


if __name__ == "__main__":
    main()
