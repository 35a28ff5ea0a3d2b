"""Stage evaluate: one generator with greedy and multi-turn Best-of-N, every selector.

    python pipelines/evaluate.py run_dir=runs/default name=iter2          # generator 2, the run's final verifier
    python pipelines/evaluate.py run_dir=runs/default name=base eval.limit=200 eval.search.searches=10
    python pipelines/evaluate.py run_dir=runs/default name=other generator=path/to/model verifier=null

Writes run_dir/eval/<name>/ (config.yaml, results.jsonl, manifest.json; see mucode/stages/evaluate.py).
"""

from mucode.config import stage_main
from mucode.stages.evaluate import EvaluateConfig, run


@stage_main("evaluate")
def main(config: EvaluateConfig) -> None:
    metrics = run(config)
    bon = "  ".join(f"{sel} {m['accuracy']:.3f}" for sel, m in metrics["bon"].items())
    print(f"{config.name}: greedy {metrics['greedy']['accuracy']:.3f}  BoN {bon}")


if __name__ == "__main__":
    main()
