"""Stage relabel: iteration i's episodes relabeled by the local-search expert.

    python pipelines/relabel.py run_dir=runs/default iteration=1
    python pipelines/relabel.py run_dir=runs/default iteration=1 relabel.mode=rft

Reads run_dir/iter{i}/rollouts and (modes both, learned) iter{i}/verifier; writes
run_dir/iter{i}/relabel/examples (see mucode/stages/relabel.py).
"""

from mucode.config import stage_main
from mucode.stages.relabel import RelabelStageConfig, run


@stage_main("relabel")
def main(config: RelabelStageConfig) -> None:
    print(run(config))


if __name__ == "__main__":
    main()
