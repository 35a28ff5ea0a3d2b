"""The main job: the whole muCode expert-iteration loop, each stage in its own folder of run_dir.

    python pipelines/expert_iteration.py                        # embedded default, tiny model, CPU
    python pipelines/expert_iteration.py run_dir=runs/a seed=1  # any Hydra override

Rerun the same command after a crash or a kill: completed stages are skipped (see mucode/iterate.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mucode.config import stage_main  # noqa: E402
from mucode.iterate import ExpertIterationConfig, run  # noqa: E402


@stage_main("expert_iteration")
def main(config: ExpertIterationConfig) -> None:
    run(config)


if __name__ == "__main__":
    main()
