"""Generator SFT: the loss mask from the chat structure, truncation, the loss, warm-start examples,
and the train_generator stage through its Hydra config on a tiny model."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from mucode import artifacts, sft
from mucode.config import CONF_DIR, register
from mucode.models import ModelConfig, load_generator
from mucode.prompts import first_turn, format_code, next_turn
from mucode.records import Problem, SFTExample, write_records
from mucode.sft import IGNORE, Tokenized
from mucode.stages import train_generator as stage
from mucode.stages.train_generator import TrainGeneratorConfig
from mucode.stages.warm_start import WarmStartConfig

TARGET = "def fold(x):\n    return x + 3"


def two_turn_example() -> SFTExample:
    statement = "Write a function fold(x) that will add 3 to x.\n\nTests:\nassert fold(1) == 4"
    state = [{"role": "user", "content": statement}]
    state = next_turn(state, "def fold(x):\n    return x", "Failed: assert fold(1) == 4\nfold(1) returned 1")
    return SFTExample("p0", state, TARGET)


def test_loss_mask_covers_exactly_the_final_assistant_turn_and_its_end_token(tiny_tokenizer):
    tok = tiny_tokenizer
    item = sft.tokenize(tok, two_turn_example(), max_length=512)
    ids, labels = item.input_ids, sft.labels_of(item)
    assistant = tok.convert_tokens_to_ids("<|assistant|>")
    final_start = max(i for i, t in enumerate(ids) if t == assistant) + 1  # after the last <|assistant|>
    assert ids.count(assistant) == 2  # the earlier (failed) answer is in the prompt, unlabelled
    assert all(label == IGNORE for label in labels[:final_start])
    assert labels[final_start:] == ids[final_start:]
    assert ids[-1] == labels[-1] == tok.convert_tokens_to_ids("<|end|>") == tok.eos_token_id
    assert tok.decode(ids[final_start:-1]) == format_code(TARGET)
    assert item.prompt_len == final_start


def test_long_prompt_is_cut_from_the_left_and_long_targets_are_dropped(tiny_tokenizer):
    tok = tiny_tokenizer
    full = sft.tokenize(tok, two_turn_example(), max_length=512)
    target_len = len(full.input_ids) - full.prompt_len
    cut = sft.tokenize(tok, two_turn_example(), max_length=target_len + 5)
    assert len(cut.input_ids) == target_len + 5 and cut.prompt_len == 5
    assert cut.input_ids[0] == tok.bos_token_id  # bos kept, then the prompt's last 4 tokens
    assert cut.input_ids[1:] == full.input_ids[-(target_len + 4):]
    assert sft.tokenize(tok, two_turn_example(), max_length=target_len) is None
    items, dropped = sft.tokenize_all(tok, [two_turn_example()] * 3, max_length=target_len)
    assert (items, dropped) == ([], 3)


def test_template_without_prefix_property_fails_loudly(tiny_tokenizer):
    tok = tiny_tokenizer
    saved = tok.chat_template
    # a template that renders the generation prompt differently from a finished conversation
    tok.chat_template = saved.replace("{% if add_generation_prompt %}<|assistant|>{% endif %}",
                                      "{% if add_generation_prompt %}<|assistant|>Sure:{% endif %}")
    try:
        with pytest.raises(ValueError, match="example p0: the chat template's prompt tokens are not a prefix"):
            sft.tokenize(tok, two_turn_example(), max_length=512)
    finally:
        tok.chat_template = saved


def test_collate_right_pads_and_masks_padding():
    batch = sft.collate([Tokenized([5, 6, 7, 8], 2), Tokenized([5, 9], 1)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 9, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, 7, 8], [IGNORE, 9, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


class FixedLogits(torch.nn.Module):
    """A 'model' whose logits favour token 1 everywhere: log-probs are known in closed form."""

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, 3)
        logits[..., 1] = 1.0
        return type("Out", (), {"logits": logits})()


def test_sft_loss_is_the_mean_over_examples_of_per_token_means():
    batch = sft.collate([Tokenized([0, 1, 1, 2], 1), Tokenized([0, 2], 1)], pad_id=0)
    loss, metrics = sft.sft_loss(FixedLogits(), batch)
    log_z = torch.log(torch.tensor(2.0) + torch.e)
    nll_1, nll_other = log_z - 1.0, log_z  # -log p(token 1), -log p(token 0 or 2)
    first = (nll_1 + nll_1 + nll_other) / 3  # targets 1, 1, 2
    second = nll_other  # target 2
    assert loss.item() == pytest.approx(((first + second) / 2).item(), rel=1e-6)
    assert metrics["accuracy"].item() == pytest.approx((2 / 3 + 0) / 2)


def test_warmup_examples_are_single_turn_references():
    problems = [Problem("a", "Write f(x) that adds 1.", "f", ["assert f(1) == 2"], ["assert f(2) == 3"],
                        reference="def f(x):\n    return x + 1")]
    (example,) = sft.warmup_examples(problems)
    assert example.messages == first_turn(problems[0]) and example.target == problems[0].reference
    problems[0].reference = None
    with pytest.raises(ValueError, match="problem a: no reference solution"):
        sft.warmup_examples(problems)


def _compose(overrides: list[str], name: str = "train_generator"):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name=name, overrides=overrides))


def test_default_configs_are_the_main_jobs_recipes():
    warm = _compose([], "warm_start")
    assert isinstance(warm, WarmStartConfig) and warm.init == "base" and warm.out_dir is None
    recipe = warm.warmup
    assert (recipe.max_steps, recipe.lr, recipe.batch_tokens, recipe.sort_window) == (700, 4e-3, 2048, 50)
    config = _compose([])
    assert isinstance(config, TrainGeneratorConfig) and config.iteration == 1 and config.inputs is None
    assert (config.sft.init, config.sft.replay) == ("generator0", 1.0)
    assert (config.sft.train.max_steps, config.sft.train.lr, config.sft.train.sort_window) == (170, 5e-4, 0)
    with pytest.raises(ValueError, match="iteration=0 must be >= 1"):
        _compose(["iteration=0"])


SMALL = ["sft.train.max_steps=3", "sft.train.batch_tokens=0", "sft.train.batch_size=4", "sft.train.max_length=256",
         "sft.train.precision=fp32", "sft.train.warmup_steps=1", "sft.train.lr=1e-2", "sft.train.log_every=1",
         "tracking.wandb=disabled"]


def test_stage_trains_from_init_saves_model_manifest_and_skips_when_done(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    write_records([SFTExample(f"p{i}", two_turn_example().messages, f"def fold(x):\n    return x + {i}")
                   for i in range(8)], data)
    warm = tmp_path / "warmup" / "model"  # generator 0, where sft.init=generator0 starts
    warm.parent.mkdir()
    import shutil

    shutil.copytree(tiny_model_dir, warm)
    config = _compose([f"run_dir={tmp_path}", f"inputs=[{data}]", "sft.replay=0", *SMALL])
    metrics = stage.run(config)
    out = tmp_path / "iter1" / "sft"
    manifest = artifacts.read_manifest(out)
    assert manifest["outputs"] == ["model"] and manifest["metrics"]["train"]["steps"] == 3 == metrics["train"]["steps"]
    assert set(manifest["inputs"]) == {"input0", "init"} and manifest["inputs"]["init"]["path"] == str(warm)
    assert OmegaConf.load(out / "config.yaml").sft.train.max_steps == 3
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"iter1/sft"} and [r["step"] for r in rows] == [1, 2, 3, None]
    assert rows[-1]["train/steps"] == 3 and rows[-1]["examples"] == 8  # the final row: the manifest's metrics
    before, _ = load_generator(ModelConfig(), str(tiny_model_dir))
    after, tok = load_generator(ModelConfig(), str(out / "model"))
    assert tok.chat_template and tok.eos_token == "<|end|>"
    start = dict(before.named_parameters())
    assert all(not torch.equal(p, start[n]) for n, p in after.named_parameters())
    assert stage.run(config) == metrics  # complete: skipped


def test_stage_without_its_inputs_names_them(tmp_path):
    from mucode.stages import warm_start

    with pytest.raises(FileNotFoundError, match="base/model: base model not found; run pipelines/prepare.py"):
        warm_start.run(_compose([f"run_dir={tmp_path}"], "warm_start"))
    with pytest.raises(FileNotFoundError, match="warmup/model: generator 0 not found; run pipelines/warm_start.py"):
        stage.run(_compose([f"run_dir={tmp_path}"]))
    config = _compose([f"run_dir={tmp_path}", f"inputs=[{tmp_path}/nothing]", "sft.replay=0"])
    (tmp_path / "warmup" / "model").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="nothing: SFT examples not found"):
        stage.run(config)
    assert not (tmp_path / "iter1").exists()  # nothing half-written


def test_replay_mixes_a_seeded_share_of_warmup_references(tmp_path):
    data = tmp_path / "data"
    write_records([SFTExample(f"p{i}", two_turn_example().messages, TARGET) for i in range(8)], data)
    common = [f"run_dir={tmp_path}", "task.embedded.size=200"]
    every = stage.load_examples(_compose([*common, "sft.replay=null"]), [str(data)])
    half = stage.load_examples(_compose([*common, "sft.replay=0.5"]), [str(data)])
    assert len(every) == 8 + 125 and len(half) == 8 + 4  # 200 problems: 125 in the warm-up split
    assert half[:8] == every[:8] and all(ex in every[8:] for ex in half[8:])
    assert half == stage.load_examples(_compose([*common, "sft.replay=0.5"]), [str(data)])  # seeded
    assert len(stage.load_examples(_compose([*common, "sft.replay=0"]), [str(data)])) == 8
    with pytest.raises(ValueError, match="replay=-1.0 must be >= 0"):
        _compose([*common, "sft.replay=-1"])


def test_training_keeps_fp32_master_weights_when_the_model_loads_in_bf16(tiny_model_dir, tmp_path):
    """model.dtype=bfloat16 (conf/model/hub.yaml) is for sampling: at the paper's lr 5e-7 an update of bf16
    weights in place rounds to nothing (bf16 has 8 bits of mantissa); the stage trains fp32 weights."""
    import shutil

    data = tmp_path / "data"
    write_records([SFTExample(f"p{i}", two_turn_example().messages, TARGET) for i in range(8)], data)
    shutil.copytree(tiny_model_dir, tmp_path / "warmup" / "model")
    config = _compose([f"run_dir={tmp_path}", f"inputs=[{data}]", "sft.replay=0", "model.dtype=bfloat16", *SMALL,
                       "sft.train.lr=5e-7", "sft.train.max_steps=2", "sft.train.precision=bf16"])
    stage.run(config)
    before, _ = load_generator(ModelConfig(), str(tiny_model_dir))
    after, _ = load_generator(ModelConfig(), str(tmp_path / "iter1" / "sft" / "model"))
    start = dict(before.named_parameters())
    deltas = [(p - start[n]).abs().detach() for n, p in after.named_parameters()]
    changed = sum(int((d > 0).sum()) for d in deltas)
    total = sum(d.numel() for d in deltas)
    # two AdamW steps of ~5e-7 each moved most weights by about that much (a bf16 round trip would
    # have moved them by ~1e-4), and the model was saved in fp32
    assert changed > total // 2 and max(float(d.max()) for d in deltas) < 1e-5, (changed, total)
    saved = json.loads((tmp_path / "iter1" / "sft" / "model" / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype")) == "float32"
    # a step of that size on bf16 weights: nearly all lost
    w = start["model.layers.0.mlp.up_proj.weight"].detach().bfloat16()
    assert (w + 5e-7 != w).float().mean() < 0.05
