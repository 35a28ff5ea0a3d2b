"""Stage: train the verifier on all rollouts so far (SPEC §1 step 2).

    python pipelines/train_verifier.py run_dir=runs/default                       # iteration 1, CPU
    python pipelines/train_verifier.py run_dir=runs/default out_dir=runs/default/iter2/verifier \
        inputs=[runs/default/iter1/rollouts,runs/default/iter2/rollouts] loss=bce
    torchrun --nproc_per_node 4 pipelines/train_verifier.py run_dir=runs/x model=hub \
        train.deepspeed=conf/deepspeed/zero2.json train.precision=bf16         # multi-GPU, DeepSpeed

Reads the rollout folders (`inputs`), the problem split they were collected on (`problems`) and the
base model (the warm start run_dir/warmup/model for the tiny default, or `init=PATH`); writes
out_dir/model (AutoModelForSequenceClassification, num_labels=1), metrics.jsonl, config.yaml and
manifest.json with validation AUC, accuracy, ECE and Best-of-N selection accuracy (see
mucode/verifier.py). Rerunning a killed run resumes from out_dir/checkpoints; a complete stage is skipped.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mucode.config import stage_main  # noqa: E402
from mucode.verifier import TrainVerifierConfig, train_verifier  # noqa: E402

SHOWN = ("auc", "accuracy", "ece", "bon_selection_accuracy")


@stage_main("train_verifier")
def main(config: TrainVerifierConfig) -> None:
    metrics = train_verifier(config)
    train, valid = metrics["train"], metrics.get("valid", {})
    shown = ", ".join(f"{k} {valid[k]:.3f}" for k in SHOWN if valid.get(k) is not None) or "none"
    print(f"{train['steps']} steps, {train['seconds']:.0f} s -> {train['model_dir']}; valid: {shown}")


if __name__ == "__main__":
    main()
