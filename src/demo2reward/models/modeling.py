"""Tokenizer and models: a locally trained tokenizer, tiny Llama-style models built from a config,
and the loaders every stage uses, so that no stage knows whether it holds a tiny or a hub model.

A real base model (``model.name_or_path``: a hub id or a local folder) is never copied into the pipeline:
`prepare` writes a *base pointer* folder, ``base_model.json`` (id, revision, dtype) plus the
base's tokenizer, prepared for the pipeline (chat template, pad token, left padding). Every loader resolves a
pointer folder to the base model, so ``models/init`` and ``models/pretrain`` stay a few MB while the weights live
in the HF cache or the user's folder. The first trained model (SFT) is a full ``save_pretrained`` folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from demo2reward.core.artifacts import verify_manifest
from demo2reward.core.params import LoRAParams, ModelParams
from demo2reward.core.stage import StageError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
# EOS closes every turn, so that the model learns to stop. The generation prompt ends the template, so the
# prompt's text is a prefix of the prompt+completion text, as TRL requires.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + " {{ m['content'] }} "
    "{% else %}" + ASSISTANT + " {{ m['content'] }} " + EOS + " {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + " {% endif %}"
)


# For a base tokenizer without a chat template (Pythia): the user's text verbatim, then a space, the answer and
# EOS. A TL;DR prompt ends in "TL;DR:", so prompt + completion is exactly the upstream "query + ' ' + summary +
# EOS", and the prompt is a prefix of prompt + completion, as TRL requires. Later turns follow a blank line.
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}"
    "{% else %}{% if not loop.first %}\n\n{% endif %}{{ m['content'] }}{% endif %}"
    "{% endfor %}"
)
BASE_POINTER = "base_model.json"  # a folder holding this file stands for the base model it names


class ModelSourceError(StageError):
    """The base model cannot be loaded (hub unreachable, unknown id, missing folder)."""


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str) -> torch.dtype:
    """`model.dtype`: auto = bfloat16 on a GPU that supports it, else float32."""
    if name == "auto":
        cuda = torch.cuda.is_available()
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def local_base(name_or_path: str) -> str:
    """A relative local base folder (./… or ../…) is read from the repository root, where `dvc exp run --queue`
    and `--temp` find it too (they run in a copy under .dvc/tmp that holds only git-tracked files)."""
    if name_or_path.startswith(("./", "../")):
        from demo2reward.core.artifacts import repo_root

        at_root = repo_root() / name_or_path
        if at_root.exists():
            return str(at_root.resolve())
    return name_or_path


def _from_base(loader, name_or_path: str, **kwargs):
    """`loader.from_pretrained` for the base model, with one clear error naming the id and the param."""
    name_or_path = local_base(name_or_path)
    if name_or_path.startswith(("/", "./", "../", "~")) and not Path(name_or_path).expanduser().exists():
        raise ModelSourceError(f"cannot load the base model {name_or_path!r} (model.name_or_path): no such local folder")
    try:
        return loader.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        hint = "; if it needs its own code, set model.trust_remote_code: true" if "trust_remote_code" in str(err) else ""
        raise ModelSourceError(
            f"cannot load the base model {name_or_path!r} (model.name_or_path): {first}{hint}. Point model.name_or_path "
            "at a local save_pretrained folder (or an `hf download` snapshot), or run where the hub is reachable "
            "(HF_HUB_OFFLINE=1 reads the local HF cache only)"
        ) from None


def _from_folder(loader, folder: str, **kwargs):
    """`loader.from_pretrained` for a saved model folder, with one clear error naming it."""
    try:
        return loader.from_pretrained(folder, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        hint = ""
        if "trust_remote_code" in str(err):
            hint = "; it wants to run its own code, which only params can allow (model.trust_remote_code, or "
            hint += "evaluate.judge_trust_remote_code for a judge)"
        raise ModelSourceError(f"cannot load the model folder {folder}: {first}{hint}") from None


def prepare_tokenizer(tokenizer, chat_template: str | None = None):
    """Make a base tokenizer fit the pipeline: a chat template if it has none, a pad token (EOS), left padding."""
    if tokenizer.chat_template is None:
        tokenizer.chat_template = chat_template or PLAIN_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelSourceError("the base tokenizer has neither a pad nor an EOS token; the pipeline needs one to pad")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends to the right end of every prompt
    return tokenizer


def write_base_pointer(p: ModelParams, out: Path) -> dict[str, float]:
    """Write the base pointer folder for `p.name_or_path`: no weights, only the id and the prepared tokenizer.

    The config and tokenizer are fetched now, so an unreachable id fails in `prepare`, before any training.
    """
    hub = {"revision": p.revision, "trust_remote_code": p.trust_remote_code}
    config = _from_base(AutoConfig, p.name_or_path, **hub)
    tokenizer = prepare_tokenizer(_from_base(AutoTokenizer, p.name_or_path, **hub), p.chat_template)
    tokenizer.save_pretrained(str(out))
    pointer = {"name_or_path": p.name_or_path, "revision": p.revision, "dtype": p.dtype}
    (Path(out) / BASE_POINTER).write_text(json.dumps({**pointer, "model_type": config.model_type}, indent=2) + "\n")
    return {"vocab_size": len(tokenizer)}


def is_base_pointer(path: str | Path) -> bool:
    return (Path(path) / BASE_POINTER).exists()


def _source(path: str | Path) -> tuple[str, dict]:
    """What to pass to from_pretrained for `path`: the base model for a pointer folder, else the folder itself."""
    pointer = Path(path) / BASE_POINTER
    if pointer.exists():
        base = json.loads(pointer.read_text())
        if not isinstance(base.get("name_or_path"), str):
            raise ModelSourceError(f"{pointer}: not a base pointer written by prepare (no name_or_path)")
        return base["name_or_path"], {"revision": base.get("revision"), "dtype": resolve_dtype(base.get("dtype", "auto"))}
    return str(path), {"dtype": "auto"}  # the dtype it was saved in (float32 for the tiny models)


def lora_config(p: LoRAParams | None, task_type: str):
    """The peft LoraConfig for a trainer's `peft_config`, or None when LoRA is off."""
    if p is None or not p.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=p.r,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=p.target_modules,
        task_type=task_type,
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,  # the reward head is new: train it fully
    )


def train_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on the task's own texts (no hub download)."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=[PAD, BOS, EOS, UNK, USER, ASSISTANT]))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )


def build_causal_lm(p: ModelParams, tokenizer: PreTrainedTokenizerFast, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_hidden_layers,
        num_attention_heads=p.num_attention_heads,
        num_key_value_heads=p.num_attention_heads,
        max_position_embeddings=p.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config)


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerFast:
    """The tokenizer saved with a model (or a pointer), padding on the left.

    transformers does not save `padding_side`, so a reloaded base tokenizer would pad on the right, and batched
    generation would put pad tokens between a prompt and its answer. One from outside the pipeline (a judge reward
    model) without a chat template or a pad token gets the same fallbacks as a base tokenizer (`prepare_tokenizer`).
    """
    verify_manifest(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if tokenizer.chat_template is None or tokenizer.pad_token is None:
        prepare_tokenizer(tokenizer)
    tokenizer.padding_side = "left"
    return tokenizer


def _load(auto_class, path: str | Path, trust_remote_code: bool = False, **kwargs):
    """`auto_class.from_pretrained` for `path`, on the GPU when there is one; also the names of the weights that
    were missing from the checkpoint (and so initialised at random). Remote code runs only with the params' consent
    (`core.runtime.Runtime.trust_remote_code`, or a judge's own param), which the caller passes."""
    verify_manifest(path)
    source, base_kwargs = _source(path)
    base_kwargs["trust_remote_code"] = trust_remote_code
    loader = _from_base if is_base_pointer(path) else _from_folder
    model, info = loader(auto_class, source, **base_kwargs, **kwargs, output_loading_info=True)
    return model.to(device()), list(info.get("missing_keys", []))


def load_policy(path: str | Path, trust_remote_code: bool = False) -> torch.nn.Module:
    """A causal LM from a saved folder, or the base model a pointer folder names; on the GPU when there is one."""
    return _load(AutoModelForCausalLM, path, trust_remote_code)[0]


class UntrainedRewardHeadError(StageError):
    """A reward model's score head is not in its checkpoint: its scores would be noise."""


def load_reward_model(
    path: str | Path, tokenizer=None, *, new_head: bool = False, trust_remote_code: bool = False
) -> torch.nn.Module:
    """A sequence-classification model with one scalar output.

    `new_head=True` starts a reward model from a causal LM (the head is fresh, as it should be before training).
    Otherwise every weight must come from the checkpoint: a causal LM given as a judge or a reward would get a
    random score head, and its scores would be noise, so it is refused.
    """
    model, missing = _load(AutoModelForSequenceClassification, path, trust_remote_code, num_labels=1)
    if missing and not new_head:
        raise UntrainedRewardHeadError(
            f"{path} is not a trained reward model: its checkpoint lacks {', '.join(sorted(missing)[:3])} (a score head "
            "would be random). Give a sequence-classification model trained as a reward model"
        )
    if tokenizer is None and model.config.pad_token_id is None:
        tokenizer = load_tokenizer(path, trust_remote_code)  # a judge from outside: batched scoring needs the pad id
    if tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model
