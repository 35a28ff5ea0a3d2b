"""Stage: evaluate one generator with greedy and multi-turn Best-of-N, every selector (SPEC §1 "Inference").

    python pipelines/evaluate.py run_dir=runs/default name=iter2                 # run generator 2, test split
    python pipelines/evaluate.py run_dir=runs/default name=base limit=200 search.searches=10 search.candidates=5
    python pipelines/evaluate.py run_dir=runs/default name=other generator=path/to/model verifier=null
    python pipelines/evaluate.py run_dir=runs/mbpp name=iter2 model=hub search.sampling.backend=vllm  # GPU

Reads run_dir/problems/<split>, the generator (named by `name`, or `generator=`) and the verifier;
writes run_dir/eval/<name>/ (config.yaml, results.jsonl, manifest.json; see mucode/evaluate.py).
A complete stage is skipped.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mucode.config import stage_main  # noqa: E402
from mucode.evaluate import EvaluateConfig, evaluate  # noqa: E402


@stage_main("evaluate")
def main(config: EvaluateConfig) -> None:
    metrics = evaluate(config)
    bon = "  ".join(f"{sel} {m['accuracy']:.3f}" for sel, m in metrics["bon"].items())
    print(f"{config.name}: greedy {metrics['greedy']['accuracy']:.3f}  BoN {bon} -> {config.out_dir}")


if __name__ == "__main__":
    main()
