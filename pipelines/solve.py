"""Solve your own problems with a trained generator and verifier (multi-turn Best-of-N, one selector).

    python pipelines/solve.py problems=my_problems.jsonl                       # the default run's models
    python pipelines/solve.py problems=my.jsonl generator=runs/x/iter2/sft/model \
        verifier=runs/x/iter2/verifier/model out=answers.jsonl search.candidates=8
    python pipelines/solve.py problems=my.jsonl generator=path/to/model verifier=null   # selector pt

Writes `out`: one JSON line per problem (see mucode/stages/solve.py).
"""

from mucode.config import stage_main
from mucode.stages.solve import SolveConfig, run


@stage_main("solve")
def main(config: SolveConfig) -> None:
    print(run(config))


if __name__ == "__main__":
    main()
