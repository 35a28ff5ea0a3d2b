"""Stage train_verifier: R_i on the rollouts of iterations 1..i.

    python pipelines/train_verifier.py run_dir=runs/default                        # R_1, CPU
    python pipelines/train_verifier.py run_dir=runs/default iteration=2 verifier.loss=bce \
        out_dir=runs/default/iter2/verifier-bce     # another loss, beside the main job's R_2
    torchrun --nproc_per_node 4 pipelines/train_verifier.py run_dir=runs/x model=hub \
        verifier.train.deepspeed=conf/deepspeed/zero2.json verifier.train.precision=bf16   # multi-GPU

Writes out_dir (default run_dir/iter{i}/verifier): model/ (AutoModelForSequenceClassification,
num_labels=1), metrics.jsonl, config.yaml and manifest.json with the validation metrics (see
mucode/stages/train_verifier.py). A killed run resumes from its checkpoints.
"""

from mucode.config import stage_main
from mucode.stages.train_verifier import TrainVerifierConfig, run

SHOWN = ("auc", "pair_accuracy", "accuracy", "ece", "bon_selection_accuracy")


@stage_main("train_verifier")
def main(config: TrainVerifierConfig) -> None:
    metrics = run(config)
    train, valid = metrics["train"], metrics.get("valid") or {}
    shown = ", ".join(f"{k} {valid[k]:.3f}" for k in SHOWN if valid.get(k) is not None) or "none"
    print(f"{train['steps']} steps, {train['seconds']:.0f} s -> {train['model_dir']}; valid: {shown}")


if __name__ == "__main__":
    main()
