"""Stage evaluate: one generator with greedy and multi-turn Best-of-N, every selector.

    python pipelines/evaluate.py run_dir=runs/default name=iter2          # generator 2, the run's final verifier
    python pipelines/evaluate.py run_dir=runs/default name=base eval.limit=200 eval.search.searches=10 \
        out_dir=runs/default/eval/base-s10            # another search, beside the main job's
    python pipelines/evaluate.py run_dir=runs/default name=other generator=path/to/model verifier=null
    python pipelines/evaluate.py run_dir=runs/mbpp name=iter2 task=mbpp eval.tasks=[mbpp,humaneval]

Writes run_dir/eval/<name>/ (config.yaml, results.jsonl, manifest.json; see mucode/stages/evaluate.py), and
run_dir/eval-<task>/<name>/ for every other task of eval.tasks.
"""

from mucode.config import stage_main
from mucode.stages.evaluate import EvaluateConfig, run


@stage_main("evaluate")
def main(config: EvaluateConfig) -> None:
    for task, metrics in run(config).items():
        bon = "  ".join(f"{sel} {m['accuracy']:.3f}" for sel, m in metrics["bon"].items())
        print(f"{config.name} on {task}: greedy {metrics['greedy']['accuracy']:.3f}  BoN {bon}")


if __name__ == "__main__":
    main()
