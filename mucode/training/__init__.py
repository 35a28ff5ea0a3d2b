"""One training loop for the generator (SFT) and the verifier: CPU, one GPU, DDP, DeepSpeed ZeRO-2/3.

    result = train(model, examples, lengths, collate, loss_fn, TrainConfig(), out_dir, logger, tokenizer)

The caller supplies the data and the loss; the loop does batching, the optimizer, the schedule,
precision, gradient accumulation, distribution, checkpoints, resume, metrics and the final save:
    examples     any sequence (token ids, pairs, ...); `lengths[i]` is example i's length in tokens
    collate      list of examples -> dict of tensors (padding happens here)
    loss_fn      (model, batch) -> (loss, metrics): the loss is the MEAN over the micro-batch's
                 examples (a pure function of the model's outputs; sft.sft_loss, the verifier's
                 BCE / Bradley-Terry). metrics: name -> scalar, averaged like the loss.

How to run (the stage pipelines call `train`; rank and world size come from the environment):
    1 CPU or 1 GPU     python pipelines/train_generator.py run_dir=runs/x
    DDP, 1 node        torchrun --nproc_per_node 4 pipelines/train_generator.py run_dir=runs/x
    multi-node         srun torchrun --nnodes $SLURM_NNODES --nproc_per_node 4 --rdzv_backend c10d \
                           --rdzv_endpoint $HEAD:29500 pipelines/train_generator.py run_dir=runs/x
    DeepSpeed          the same torchrun line + train.deepspeed=conf/deepspeed/zero2.json (or zero3.json)
    CPU, 2 processes   torchrun --nproc_per_node 2 ... (gloo; plain DDP, and DeepSpeed ZeRO-2/3 too: both
                       ran here on CPU; set TORCH_EXTENSIONS_DIR so DeepSpeed's one-time C++ build, ~35 s,
                       is cached)

The modules, in the order a run uses them:
    config.py      TrainConfig (the recipe), Schedule, Precision; TrainResult (what a run did)
    batching.py    the batch plan (shuffled, greedily packed to `batch_tokens`, optional length
                   buckets; the same on every rank) and the lr schedule: pure functions
    checkpoint.py  checkpoints written atomically every `checkpoint_every` steps, resume, the
                   config/data fingerprint, the final save_pretrained into `out_dir/model`
    loop.py        process state, accelerator, precision, optimizer, metrics and `train`

A rerun with the same out_dir resumes from the newest checkpoint and ends at the same step with the
same weights as a run never interrupted (bitwise on CPU with the same seed and thread count); a
checkpoint from a different config or data fails with one line. The gradient of a step is the
example-weighted mean of the micro-batches' mean losses, so accumulation and data parallelism
reproduce one large batch exactly.

Limits: one model and one optimizer (AdamW); no sequence packing (sort_window > 0 keeps padding small); the
fingerprint does not hash example contents, only their count and lengths.
"""

from mucode.training.batching import lr_factor, padding_waste, plan_batches, total_steps
from mucode.training.checkpoint import (
    CHECKPOINTS, RESULT_FILE, STATE_FILE, Position, fingerprint, finished_result, latest_checkpoint, resume,
    save_checkpoint, save_model,
)
from mucode.training.config import Precision, Schedule, TrainConfig, TrainResult
from mucode.training.loop import (
    LossFn, deepspeed_config, make_accelerator, make_optimizer, process_state, resolve_precision, train,
)

__all__ = [
    "CHECKPOINTS", "RESULT_FILE", "STATE_FILE", "LossFn", "Position", "Precision", "Schedule", "TrainConfig",
    "TrainResult", "deepspeed_config", "fingerprint", "finished_result", "latest_checkpoint", "lr_factor",
    "make_accelerator", "make_optimizer", "padding_waste", "plan_batches", "process_state", "resolve_precision",
    "resume", "save_checkpoint", "save_model", "total_steps", "train",
]
