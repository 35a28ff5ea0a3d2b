"""Stage train_generator: generator i, SFT from generator 0 on the relabeled data of iterations 1..i.

    python pipelines/train_generator.py run_dir=runs/default iteration=1
    torchrun --nproc_per_node 4 pipelines/train_generator.py run_dir=runs/x model=hub \
        sft.train.deepspeed=conf/deepspeed/zero3.json sft.train.precision=bf16        # multi-GPU, DeepSpeed

Writes out_dir (default run_dir/iter{i}/sft): model/, metrics.jsonl, config.yaml and manifest.json
(see mucode/stages/train_generator.py). A killed run resumes from its checkpoints.
"""

from mucode.config import stage_main
from mucode.stages.train_generator import TrainGeneratorConfig, run


@stage_main("train_generator")
def main(config: TrainGeneratorConfig) -> None:
    train = run(config)["train"]
    print(f"{train['steps']} steps, final loss {train['final_loss']:.4f}, {train['seconds']:.0f} s "
          f"-> {train['model_dir']}")


if __name__ == "__main__":
    main()
