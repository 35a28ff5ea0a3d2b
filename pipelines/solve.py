"""Solve your own problems with a trained generator and verifier (multi-turn Best-of-N, one selector).

    python pipelines/solve.py problems=my_problems.jsonl                       # the default run's models
    python pipelines/solve.py problems=my.jsonl generator=runs/x/iter2/sft/model \
        verifier=runs/x/final_verifier/model out=answers.jsonl search.candidates=8
    python pipelines/solve.py problems=my.jsonl generator=path/to/model verifier=null   # selector pt

Reads a JSONL of Problem rows (mucode.tasks.jsonl; private_tests may be empty and are never run);
writes `out`: one JSON line per problem with id, code, turn, public_pass, score (null without a
verifier) and the public feedback of the chosen code.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mucode.config import stage_main  # noqa: E402
from mucode.evaluate import SolveConfig, solve  # noqa: E402


@stage_main("solve")
def main(config: SolveConfig) -> None:
    print(solve(config))


if __name__ == "__main__":
    main()
