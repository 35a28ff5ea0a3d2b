"""Stage warm_start: generator 0 of the tiny default (SFT on the warm-up references).

    python pipelines/warm_start.py run_dir=runs/default                   # after pipelines/prepare.py
    torchrun --nproc_per_node 2 pipelines/warm_start.py run_dir=runs/x warmup.deepspeed=conf/deepspeed/zero2.json

Reads run_dir/base/model and the warmup split; writes run_dir/warmup/ (see mucode/stages/warm_start.py).
A killed run resumes from its checkpoints; a complete stage is skipped.
"""

from mucode.config import stage_main
from mucode.stages.warm_start import WarmStartConfig, run


@stage_main("warm_start")
def main(config: WarmStartConfig) -> None:
    train = run(config)["train"]
    print(f"{train['steps']} steps, final loss {train['final_loss']:.4f}, {train['seconds']:.0f} s "
          f"-> {train['model_dir']}")


if __name__ == "__main__":
    main()
