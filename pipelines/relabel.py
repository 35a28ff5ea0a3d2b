"""Stage: relabel iteration i's episodes with the local-search expert (SPEC §1 step 3).

    python pipelines/relabel.py run_dir=runs/default iteration=1
    python pipelines/relabel.py run_dir=runs/default iteration=1 relabel.mode=rft

Reads run_dir/iter{i}/rollouts and (modes both, learned) iter{i}/verifier; writes
run_dir/iter{i}/relabel/examples (see mucode/relabel.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mucode.config import stage_main  # noqa: E402
from mucode.relabel import RelabelStageConfig, relabel_stage  # noqa: E402


@stage_main("relabel")
def main(config: RelabelStageConfig) -> None:
    print(relabel_stage(config))


if __name__ == "__main__":
    main()
