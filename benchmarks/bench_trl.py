"""mucode's training loop vs TRL's SFTTrainer and RewardTrainer: same model, data, batch, steps.

    make bench-env                                   # .venv-bench: mucode + trl (trl is not a mucode dependency)
    .venv-bench/bin/python benchmarks/bench_trl.py --task sft    --reps 5 --json /tmp/bench_sft.json
    .venv-bench/bin/python benchmarks/bench_trl.py --task sft    --reps 5 --sort-window 50  # length buckets
    .venv-bench/bin/python benchmarks/bench_trl.py --task reward --reps 5 --json /tmp/bench_reward.json

Each repetition runs both sides, each in a fresh process (order alternating, so outside load hits
both), in the same environment (one torch, one transformers), with the same start:
    model   the default tiny Llama (~2M parameters, 192 x 4), built once and saved; SFT loads it as
            a causal LM, the reward task as AutoModelForSequenceClassification (num_labels=1, the
            fresh head seeded identically on both sides)
    data    sft:    the embedded suite's warm-start examples (statement + public tests -> reference
                    code), rendered with the chat template; loss on the answer tokens (the end-of-turn
                    token included), the prompt masked. TRL gets the same text as prompt/completion
                    pairs, and the script checks its token ids equal mucode's before timing.
            reward: (chosen, rejected) pairs per problem: the reference code vs another problem's
                    reference renamed to this problem's function (the throughput and the loss curve
                    are what is compared, not verifier quality). Loss -log sigmoid(r+ - r-) on both
                    sides (mucode's l2 term off, TRL's center_rewards_coefficient None).
    batch   --batch examples (pairs) per optimizer step, no accumulation, max length 1024
    recipe  AdamW (0.9, 0.95), weight decay 0.01, lr --lr with 10 warmup steps then cosine to 10%,
            grad clip 1.0, bf16 autocast where fast (as mucode's precision=auto), --steps steps, seed 0
    threads --threads torch threads in both (2 by default, as `make run` on 2 cores)
How they differ: TRL shuffles and pads each batch to its longest; mucode packs shuffled examples
the same way, or with --sort-window 50 first sorts windows of 50 batches by length (less padding,
but batches of look-alike examples, which learn less per step on this data: see the README).
mucode's SFT loss is the mean over examples of each example's token mean; TRL's is the mean over all
answer tokens of the batch (equal when answers have equal length).

Measured per side: tokens/s = answer+prompt tokens that are not padding, processed per second of
the training loop (model loading and data preparation excluded on both sides: mucode's
TrainResult.seconds, TRL's train_runtime); the loss every 10 steps and the final loss (mean of the
last 10 steps); the held-out loss: both trained models scored by the same function (mucode's SFT or
BT loss, fp32) on the next 300 warm-start problems. Prints each repetition, the medians and the
ratio mucode / TRL.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOG_EVERY = 10
HELDOUT = 300  # warm-start problems after the training ones: both sides' models are scored on them


def build(workdir: Path, problems: int) -> None:
    """The shared start: the tiny model + tokenizer, and the data of both tasks, as JSON."""
    from mucode.models import TinyModelConfig, build_tiny_model, build_tokenizer
    from mucode.prompts import problem_text
    from mucode.sft import warmup_examples
    from mucode.stages.prepare import tokenizer_corpus
    from mucode.tasks import TaskConfig, load_problems

    warm = load_problems(TaskConfig(), "warmup")
    tok = build_tokenizer(tokenizer_corpus(warm))
    model = build_tiny_model(TinyModelConfig(), tok)
    model.save_pretrained(workdir / "model")
    tok.save_pretrained(workdir / "model")
    for name, chosen in (("train", warm[:problems]), ("heldout", warm[problems:problems + HELDOUT])):
        sft = [{"id": ex.problem_id, "messages": ex.messages, "target": ex.target} for ex in warmup_examples(chosen)]
        pairs = []
        for i, p in enumerate(chosen):
            other = chosen[(i + 1) % len(chosen)]
            wrong = other.reference.replace(f"def {other.entry_point}(", f"def {p.entry_point}(", 1)
            if wrong != p.reference:
                pairs.append({"id": p.id, "prompt": problem_text(p), "chosen": p.reference, "rejected": wrong})
        (workdir / f"sft_{name}.json").write_text(json.dumps(sft))
        (workdir / f"pairs_{name}.json").write_text(json.dumps(pairs))


def sft_items(tok, workdir: Path, split: str) -> list:
    """mucode's tokenized SFT examples of sft_<split>.json (prompt masked, answer ending with eos)."""
    from mucode import sft as msft
    from mucode.records import SFTExample

    rows = json.loads((workdir / f"sft_{split}.json").read_text())
    return msft.tokenize_all(tok, [SFTExample(r["id"], r["messages"], r["target"]) for r in rows], 1024)[0]


def pair_items(tok, workdir: Path, split: str) -> list[tuple[list[int], list[int]]]:
    """(chosen ids, rejected ids) of every pair in pairs_<split>.json, as mucode's verifier reads them."""
    from mucode import verifier as mver
    from mucode.records import VerifierExample

    rows = json.loads((workdir / f"pairs_{split}.json").read_text())
    chosen = mver.tokenize(tok, [VerifierExample(r["id"], r["prompt"], r["chosen"], True) for r in rows], 1024)
    rejected = mver.tokenize(tok, [VerifierExample(r["id"], r["prompt"], r["rejected"], False) for r in rows], 1024)
    return list(zip(chosen, rejected))


# ---------------------------------------------------------------------------------------------
# mucode side


def run_mucode(task: str, workdir: Path, args) -> dict:
    import torch

    from mucode import sft as msft
    from mucode import verifier as mver
    from mucode.models import ModelConfig, load_generator, load_verifier
    from mucode.tracking import TrackingConfig, WandbMode, open_logger
    from mucode.training import TrainConfig, train

    config = TrainConfig(lr=args.lr, warmup_steps=10, max_steps=args.steps, epochs=0.0, batch_size=args.batch,
                         batch_tokens=0, max_length=1024, checkpoint_every=0, log_every=LOG_EVERY, seed=0,
                         sort_window=args.sort_window)
    out = Path(tempfile.mkdtemp(dir=workdir))
    logger = open_logger(TrackingConfig(wandb=WandbMode.disabled), out, task)
    if task == "sft":
        model, tok = load_generator(ModelConfig(), str(workdir / "model"))
        items = sft_items(tok, workdir, "train")
        lengths = [len(t.input_ids) for t in items]
        result = train(model, items, lengths, lambda b: msft.collate(b, tok.pad_token_id), msft.sft_loss,
                       config, out, logger)
    else:
        torch.manual_seed(0)
        model, tok = load_verifier(str(workdir / "model"))
        items = pair_items(tok, workdir, "train")
        lengths = [2 * max(len(c), len(r)) for c, r in items]
        real = [len(c) + len(r) for c, r in items]

        def loss(model, batch):
            return mver.bt_step(model, batch, l2=0.0)

        result = train(model, items, lengths, lambda b: mver.collate_pairs(b, tok.pad_token_id), loss,
                       config, out, logger)
        # lengths above count each pair as twice its longer side (the batch budget); tokens/s counts real tokens
        result.tokens_per_s = result.tokens_per_s * (sum(real) / sum(lengths))
    logger.close()
    curve = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    return {"tokens_per_s": result.tokens_per_s, "seconds": result.seconds, "steps": result.steps,
            "curve": curve, "final_loss": curve[-1], "heldout_loss": heldout_loss(task, model, tok, workdir),
            "precision": result.precision}


def heldout_loss(task: str, model, tok, workdir: Path) -> float:
    """The trained model's loss on held-out problems, computed the same way for both sides (mucode's
    loss functions, fp32, batches of 32): SFT cross-entropy on the answers, or the BT loss of the pairs."""
    import torch

    from mucode import sft as msft
    from mucode import verifier as mver

    model.eval()
    losses = []
    with torch.no_grad():
        if task == "sft":
            items = sft_items(tok, workdir, "heldout")
            for i in range(0, len(items), 32):
                losses.append(msft.sft_loss(model, msft.collate(items[i:i + 32], tok.pad_token_id))[0].item())
        else:
            pairs = pair_items(tok, workdir, "heldout")
            for i in range(0, len(pairs), 32):
                batch = mver.collate_pairs(pairs[i:i + 32], tok.pad_token_id)
                losses.append(mver.bt_step(model, batch, l2=0.0)[0].item())
    return statistics.mean(losses)


# ---------------------------------------------------------------------------------------------
# TRL side


def trl_args(cls, out: Path, args, **extra):
    from mucode.training import Precision, resolve_precision

    bf16 = resolve_precision(Precision.auto) is Precision.bf16
    return cls(output_dir=str(out), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
               max_steps=args.steps, learning_rate=args.lr, warmup_steps=10, lr_scheduler_type="cosine_with_min_lr",
               lr_scheduler_kwargs={"min_lr_rate": 0.1}, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.95,
               adam_epsilon=1e-8, max_grad_norm=1.0, bf16=bf16, use_cpu=not _cuda(), logging_steps=LOG_EVERY,
               save_strategy="no", report_to=[], seed=0, data_seed=0, dataloader_num_workers=0,
               disable_tqdm=True, **extra)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_trl(task: str, workdir: Path, args) -> dict:
    import torch
    from datasets import Dataset

    from mucode.models import ModelConfig, load_generator, load_verifier
    from mucode.prompts import render
    from mucode.verifier import verifier_text

    out = Path(tempfile.mkdtemp(dir=workdir))
    if task == "sft":
        from trl import SFTConfig, SFTTrainer

        model, tok = load_generator(ModelConfig(), str(workdir / "model"))
        rows = json.loads((workdir / "sft_train.json").read_text())
        mine = sft_items(tok, workdir, "train")  # none is dropped at max length 1024 (checked below)
        records = [{"prompt": render(tok, r["messages"]),
                    "completion": tok.decode(t.input_ids[t.prompt_len:], skip_special_tokens=False)}
                   for r, t in zip(rows, mine)]
        config = trl_args(SFTConfig, out, args, max_length=1024, packing=False, completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(records), processing_class=tok)
        _check_sft_tokens(trainer.train_dataset, mine)
        real = [len(t.input_ids) for t in mine]
    else:
        from trl import RewardConfig, RewardTrainer

        torch.manual_seed(0)
        model, tok = load_verifier(str(workdir / "model"))
        rows = json.loads((workdir / "pairs_train.json").read_text())
        records = [{"chosen": verifier_text(tok, r["prompt"], r["chosen"]),
                    "rejected": verifier_text(tok, r["prompt"], r["rejected"])} for r in rows]
        config = trl_args(RewardConfig, out, args, max_length=1024, center_rewards_coefficient=None)
        trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_list(records),
                                processing_class=tok)
        ours = pair_items(tok, workdir, "train")
        theirs = [(row["chosen_ids"], row["rejected_ids"]) for row in trainer.train_dataset]
        if theirs != ours:
            raise SystemExit("error: TRL tokenized the pairs differently from mucode; the comparison would not be "
                             "on the same data")
        real = [len(c) + len(r) for c, r in ours]
    metrics = trainer.train().metrics
    curve = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    model = trainer.accelerator.unwrap_model(trainer.model)
    seen = args.steps * args.batch  # examples drawn: whole epochs of a shuffled dataset, then a part
    tokens = statistics.mean(real) * seen
    return {"tokens_per_s": tokens / metrics["train_runtime"], "seconds": metrics["train_runtime"],
            "steps": trainer.state.global_step, "curve": curve, "final_loss": curve[-1],
            "heldout_loss": heldout_loss(task, model, tok, workdir), "precision": "bf16" if config.bf16 else "no"}


def _check_sft_tokens(dataset, mine) -> None:
    """TRL must train on exactly mucode's token ids and mask, or the comparison is void."""
    bad = 0
    for row, t in zip(dataset, mine):
        mask = row.get("completion_mask")
        if row["input_ids"] != t.input_ids or (mask is not None and sum(mask) != len(t.input_ids) - t.prompt_len):
            bad += 1
    if bad:
        raise SystemExit(f"error: TRL tokenized {bad} of {len(mine)} examples differently from mucode; "
                         "the comparison would not be on the same data")


# ---------------------------------------------------------------------------------------------


def one_side(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    fn = run_mucode if args.side == "mucode" else run_trl
    result = fn(args.task, Path(args.workdir), args)
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=["sft", "reward"], required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="default: 4e-3 (sft), 1e-3 (reward)")
    parser.add_argument("--problems", type=int, default=2000, help="warm-start problems the data comes from")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sort-window", type=int, default=0,
                        help="mucode's length buckets (TrainConfig.sort_window): 0 = random batches, as the "
                             "iteration SFT and verifier recipes; 50 = the warm start's buckets")
    parser.add_argument("--json", help="write the per-repetition results and medians here")
    parser.add_argument("--side", choices=["mucode", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.lr = args.lr if args.lr is not None else (4e-3 if args.task == "sft" else 1e-3)
    if args.side:
        return one_side(args)
    import importlib.util

    if importlib.util.find_spec("trl") is None:
        sys.exit("error: trl is not installed in this environment; run `make bench-env` and use .venv-bench/bin/python")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "WANDB_MODE": "disabled"}
    runs: dict[str, list[dict]] = {"mucode": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), args.problems)
        for rep in range(args.reps):
            order = ["mucode", "trl"] if rep % 2 == 0 else ["trl", "mucode"]
            for side in order:
                cmd = [sys.executable, __file__, "--side", side, "--workdir", tmp, "--task", args.task,
                       "--steps", str(args.steps), "--batch", str(args.batch), "--lr", str(args.lr),
                       "--threads", str(args.threads), "--sort-window", str(args.sort_window)]
                start = time.perf_counter()
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    sys.exit(f"error: {side} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
                result = json.loads(line[len("RESULT "):]) | {"process_seconds": time.perf_counter() - start}
                runs[side].append(result)
                print(f"rep {rep} {side:6s} {result['tokens_per_s']:8.0f} tok/s  loop {result['seconds']:6.1f} s  "
                      f"final loss {result['final_loss']:.4f}  held-out {result['heldout_loss']:.4f}  "
                      f"curve {[round(x, 3) for x in result['curve']]}",
                      flush=True)
    keys = ("tokens_per_s", "seconds", "final_loss", "heldout_loss")
    med = {side: {k: statistics.median(r[k] for r in rs) for k in keys} for side, rs in runs.items()}
    ratio = med["mucode"]["tokens_per_s"] / med["trl"]["tokens_per_s"]
    print(f"median tokens/s: mucode {med['mucode']['tokens_per_s']:.0f}, TRL {med['trl']['tokens_per_s']:.0f} "
          f"-> {ratio:.2f}x; final loss mucode {med['mucode']['final_loss']:.4f}, TRL {med['trl']['final_loss']:.4f}; "
          f"held-out loss mucode {med['mucode']['heldout_loss']:.4f}, TRL {med['trl']['heldout_loss']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs, "median": med, "ratio": ratio},
                                              indent=1))


if __name__ == "__main__":
    main()
