"""Stage relabel: iteration i's episodes relabeled by the local-search expert.

    python pipelines/relabel.py run_dir=runs/default iteration=1
    python pipelines/relabel.py run_dir=runs/default iteration=1 relabel.mode=rft \
        out_dir=runs/default/iter1/relabel-rft       # another expert, beside the main job's

Reads run_dir/iter{i}/rollouts and (modes both, learned) iter{i}/verifier; writes out_dir/examples
(default run_dir/iter{i}/relabel; see mucode/stages/relabel.py).
"""

from mucode.config import stage_main
from mucode.stages.relabel import RelabelStageConfig, run


@stage_main("relabel")
def main(config: RelabelStageConfig) -> None:
    print(run(config))


if __name__ == "__main__":
    main()
