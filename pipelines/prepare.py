"""Stage prepare: the run's problems (every split of the task) and the tiny default's base model.

    python pipelines/prepare.py run_dir=runs/default
    python pipelines/prepare.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl model=hub

Writes run_dir/problems/<split> and (tiny default) run_dir/base/model; see mucode/stages/prepare.py.
"""

from mucode.config import stage_main
from mucode.stages.prepare import PrepareConfig, run


@stage_main("prepare")
def main(config: PrepareConfig) -> None:
    for stage, metrics in run(config).items():
        print(f"{stage}: {metrics}")


if __name__ == "__main__":
    main()
