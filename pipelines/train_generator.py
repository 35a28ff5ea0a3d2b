"""Stage: generator SFT (SPEC §1 step 4); with its defaults, the warm start of the tiny model.

    python pipelines/train_generator.py run_dir=runs/default                     # warm start, CPU
    python pipelines/train_generator.py run_dir=runs/default out_dir=runs/default/iter1/sft \
        inputs=[runs/default/iter1/relabel/examples] train.max_steps=170 train.lr=5e-4 train.warmup_steps=10
    torchrun --nproc_per_node 4 pipelines/train_generator.py run_dir=runs/x model=hub \
        train.deepspeed=conf/deepspeed/zero3.json train.precision=bf16        # multi-GPU, DeepSpeed

Reads the base model (run_dir/base/model for the tiny default: built here on first use, like the main
job does; or `init=PATH`), SFTExample folders (`inputs`) and/or the task's warmup split (`warmup`);
writes out_dir/model, metrics.jsonl, config.yaml and manifest.json (see mucode/sft.py). Rerunning a
killed run resumes from out_dir/checkpoints; a complete stage is skipped.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mucode.config import stage_main  # noqa: E402
from mucode.models import TINY  # noqa: E402
from mucode.sft import BASE, TrainGeneratorConfig, train_generator  # noqa: E402
from mucode.training import process_state  # noqa: E402


def ensure_base(config: TrainGeneratorConfig) -> None:
    """Build the run's tiny base model (problems + tokenizer + random init) if it is not there yet."""
    if config.init != BASE or config.model.name_or_path != TINY:
        return
    from mucode.iterate import ExpertIterationConfig, prepare_base, prepare_problems

    run = ExpertIterationConfig(run_dir=config.run_dir, task=config.task, model=config.model)
    prepare_base(run, prepare_problems(run))


@stage_main("train_generator")
def main(config: TrainGeneratorConfig) -> None:
    with process_state(config.train).main_process_first():  # one rank builds, the others read
        ensure_base(config)
    result = train_generator(config)
    print(f"{result.steps} steps, final loss {result.final_loss:.4f}, {result.seconds:.0f} s -> {result.model_dir}")


if __name__ == "__main__":
    main()
