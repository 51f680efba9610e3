"""Real tasks (TL;DR, UltraChat) through the pipeline, offline: fixture files in the upstream schemas and a tiny
local "hub" base model (byte-level BPE tokenizer trained here, no chat template, no pad token: like Pythia).

The end-to-end tests run `dvc repro` of every evaluation stage (prepare, pretrain, SFT, one IRL iteration,
SPIN, the oracle track, evaluations) in a temporary copy of the repository, so they exercise the real wiring.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from demo2reward.core.artifacts import read_jsonl
from demo2reward.core.params import ParamsError, parse_params
from demo2reward.tasks.tldr import tldr_prompt
from tests.conftest import ROOT, copy_repo, deep_merge, merged_params
from tests.test_real_tasks import (
    cnndm_comparison,
    comparison,
    msg,
    tldr_demo,
    ultrachat_local_copies,
    write_jsonl,
    write_parquet,
)

EOS = "<|endoftext|>"
ZEPHYR_LIKE_TEMPLATE = (  # a base that brings its own chat template (as zephyr-7b-sft-full does)
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_base(out: Path, texts: list[str], chat_template: str | None = None, architecture: str = "llama") -> Path:
    """A tiny Llama (or GPT-NeoX, Pythia's architecture) saved like a hub model, with a byte-level BPE tokenizer
    trained on `texts`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS], initial_alphabet=alphabet))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    sizes = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    sizes |= {"num_attention_heads": 2, "max_position_embeddings": 256}
    ids = {"eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.eos_token_id}
    if architecture == "gpt_neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**sizes, **ids))
    else:
        model = LlamaForCausalLM(LlamaConfig(**sizes, num_key_value_heads=2, **ids))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_judge(base: Path, out: Path) -> Path:
    """A sequence-classification model saved with its score head, as a third-party reward model is."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    judge = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    judge.config.pad_token_id = judge.config.eos_token_id
    judge.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def tldr_sources(root: Path) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "demos_path": write_jsonl(root / "train.jsonl", [tldr_demo(i) for i in range(24)]),
        "heldout_path": write_parquet(root / "validation.parquet", [tldr_demo(100 + i) for i in range(8)]),
        "prefs_path": write_jsonl(root / "comparisons.jsonl", [comparison(i, i % 2) for i in range(10)] + [cnndm_comparison(99)]),
    }


def ultrachat_sources(root: Path) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    return ultrachat_local_copies(root, n_train=24, n_test=8, n_prefs=10)


def real_params(task: str, sources: dict[str, str], base: Path, judge: Path) -> dict:
    """The repository's micro params, switched to a real task on local files and a local base model."""
    params = merged_params(yaml.safe_load((ROOT / "tests" / "micro_params.yaml").read_text()))
    overrides = {
        "task": {"name": task, task: {**sources, "n_train": 16, "n_heldout": 8, "n_heldout_pairs": 8}},
        "model": {"name_or_path": str(base)},
        "sft": {"max_length": 128},
        "reward": {"max_length": 128},
        "evaluate": {"judge": "reward_model", "judge_reward_model": str(judge), "max_new_tokens": 8, "batch_size": 16},
        "rollout": {"per_prompt": 2, "max_new_tokens": 8},
        "policy": {"max_new_tokens": 8},
        "spin": {"max_new_tokens": 8, "max_length": 128},
    }
    # One seed, the plain IRL track and one iteration are enough here; no gold reward, so no oracle.
    overrides |= {"seeds": [0], "irl_tracks": ["irl"], "oracle_tracks": [], "iterations": [{"k": 1, "prev": "../sft"}]}
    return deep_merge(params, overrides)


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    for name in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_ROOT"):
        env.pop(name, None)
    return env


def _run(args, cwd, env, check=True):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _one(ws: Path, pattern: str) -> Path:
    found = sorted(ws.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def repro_evaluations(ws: Path, params: dict) -> None:
    env = _env()
    copy_repo(ws, params)
    _run(["git", "init", "-q"], ws, env)
    _run(["git", "add", "-A"], ws, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], ws, env)
    _run(["dvc", "repro", "--glob", "evaluate*"], ws, env)


def _check_real_run(ws: Path) -> dict[str, dict]:
    """What every real task must give: a pointer (no weights) before SFT, SFT weights after, judge-only metrics."""
    for folder in ("models/init", "models/pretrain"):
        names = {p.name for p in (ws / folder).iterdir()}
        assert "base_model.json" in names and not any(n.endswith((".safetensors", ".bin")) for n in names), names
    assert not (ws / "data/task/world.json").exists()
    assert json.loads(_one(ws, "metrics/train/**/pretrain.json").read_text()) == {"skipped": 1.0}
    evals = {p.stem: json.loads(p.read_text()) for p in ws.glob("metrics/eval/**/*.json")}
    for name in ("sft", "irl_1", "spin_1"):
        m = evals[name]
        assert 0 <= m["win_rate_vs_demos_rm"] <= 1 and 0 <= m["reward_accuracy"] <= 1, m
        assert isinstance(m["kl_to_sft"], float) and m["response_length_mean"] >= 0
        assert not {"true_reward_mean", "win_rate_vs_demos", "reward_accuracy_policy_pairs"} & set(m), m  # no r*
    assert "proxy_reward_mean" in evals["irl_1"]
    assert "oracle_1" not in evals and not list(ws.glob("models/**/oracle"))  # oracle_tracks: [] has no stage
    info = json.loads((ws / "data/task/task.json").read_text())
    assert info["gold_reward"] is None and "no gold reward" in info["absent"]["gold_reward"]
    answers = read_jsonl(_one(ws, "data/answers/**/irl_1.jsonl"))
    assert answers and all(set(a) >= {"prompt", "demonstration", "greedy", "win_vs_demo_rm"} for a in answers)
    return evals


# ------------------------------------------------------------------------------------------------------ fast


def test_plain_chat_template_renders_the_upstream_tldr_format(tmp_path):
    from transformers import AutoTokenizer

    from demo2reward.models.modeling import prepare_tokenizer

    base = make_base(tmp_path / "base", ["SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: p\n\nTL;DR: s"] * 4)
    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(base))
    query = tldr_prompt("relationships", "My title", "Line one.\nLine two.")
    prompt = tok.apply_chat_template([msg("user", query)], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template([msg("user", query), msg("assistant", "a summary")], tokenize=False)
    assert prompt == query  # exactly the upstream query, ending in "TL;DR:"
    assert full == query + " a summary" + EOS  # upstream: query + " " + summary + EOS
    assert tok.pad_token == EOS and tok.padding_side == "left"
    ids_prompt = tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok(full, add_special_tokens=False)["input_ids"][: len(ids_prompt)] == ids_prompt  # TRL's prefix rule


def test_real_task_params_are_checked_before_compute():
    base = {"model": {"name_or_path": "EleutherAI/pythia-1b-deduped"}, "evaluate": {"judge": "llm"}, "oracle_tracks": []}
    cases = [
        ({"task": {"name": "tldr"}, "evaluate": {"judge": "llm"}}, "model.name_or_path: the tldr task needs a base model"),
        (
            {"task": {"name": "ultrachat"}, **{k: v for k, v in base.items() if k != "oracle_tracks"}},
            "oracle_tracks: the oracle trains on the task's gold reward, and the ultrachat task has none",
        ),
        ({"task": {"name": "tldr", "gold_reward": "synthetic"}, **base}, "task.gold_reward: synthetic is the embedded"),
        ({"task": {"name": "demos"}, **base}, "task.demos.path: name your demonstrations"),
        ({"task": {"gold_reward": "no_colon"}}, "task.gold_reward: 'no_colon': expected a built-in"),
        ({"task": {"name": "tldr", "tldr": {"n_trian": 3}}, **base}, "task.tldr.n_trian: unknown key"),
        ({"task": {"name": "tldr", "tldr": {"n_train": 0}}, **base}, "task.tldr.n_train"),
        ({"sft": {"batch_size": 32, "gradient_accumulation_steps": 5}}, "multiple of gradient_accumulation_steps"),
        ({"policy": {"lora": {"enabled": True}, "kl_reference": "sft"}}, "policy.lora"),
    ]
    for overrides, says in cases:
        raw = deep_merge(defaults(), overrides)
        with pytest.raises(ParamsError) as err:
            parse_params(raw)
        assert says in str(err.value), (overrides, str(err.value))
    ok = parse_params(deep_merge(defaults(), {"task": {"name": "tldr"}, **base}))
    assert ok.task.tldr.demos_path is None and ok.model.trust_remote_code is False


def defaults() -> dict:
    from demo2reward.core.params import Params

    return Params().model_dump(mode="json")


def test_trainer_settings_on_cpu_are_the_defaults():
    from demo2reward.core.params import PolicyParams, SFTParams
    from demo2reward.models.training import trainer_kwargs

    kw = trainer_kwargs("out", 0, SFTParams())
    assert kw["use_cpu"] and not kw["bf16"] and kw["activation_checkpointing"] is False
    assert kw["gradient_accumulation_steps"] == 1 and SFTParams().per_device_batch_size == 32
    assert PolicyParams(batch_size=64, gradient_accumulation_steps=4).per_device_batch_size == 16
    gc = trainer_kwargs("out", 0, SFTParams(gradient_checkpointing=True))
    assert gc["activation_checkpointing"] and gc["activation_checkpointing_kwargs"] == {"use_reentrant": False}


def test_lora_sft_and_reward_model_are_saved_merged(tmp_path):
    from demo2reward.core.params import LoRAParams, ModelParams, RewardParams, SFTParams
    from demo2reward.loop.reward import fit_reward_model
    from demo2reward.loop.sft import train_language_model
    from demo2reward.models.modeling import load_policy, load_reward_model, load_tokenizer, write_base_pointer

    base = make_base(tmp_path / "base", [f"question {i} answer {i}" for i in range(20)], ZEPHYR_LIKE_TEMPLATE)
    pointer = tmp_path / "pointer"
    pointer.mkdir()
    write_base_pointer(ModelParams(name_or_path=str(base)), pointer)
    assert load_tokenizer(pointer).chat_template == ZEPHYR_LIKE_TEMPLATE  # the base's own template is kept
    rows = [{"prompt": [msg("user", f"question {i}")], "completion": [msg("assistant", f"answer {i}")]} for i in range(16)]
    lora = LoRAParams(enabled=True, r=4, alpha=8)
    sft = tmp_path / "sft"
    train_language_model(pointer, rows, SFTParams(batch_size=8, gradient_accumulation_steps=2, lora=lora), sft, 0, 64)
    pairs = [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": [msg("assistant", "no")]} for r in rows]
    metrics = fit_reward_model(sft, sft, pairs, RewardParams(batch_size=8, lora=lora), tmp_path / "rm", 0, 64)
    for folder in (sft, tmp_path / "rm"):
        names = {p.name for p in folder.iterdir()}
        assert "model.safetensors" in names and "adapter_config.json" not in names, names  # merged, plain
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    load_policy(sft)
    assert load_reward_model(tmp_path / "rm").config.num_labels == 1


def _prepare(tmp_path: Path, params: dict) -> subprocess.CompletedProcess:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = [sys.executable, str(ROOT / "stages/prepare.py"), "--data", "data/task", "--model", "models/init"]
    env = {**_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = _run([*cmd, "--metrics", "metrics/prepare.json"], ws, env, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (ws / "data/task").exists() and not (ws / "models/init").exists()  # nothing half-written
    return proc


def _tldr_prepare_params(tmp_path: Path, sources: dict, model: str) -> dict:
    raw = defaults()
    return deep_merge(
        raw,
        {
            "task": {"name": "tldr", "tldr": sources},
            "model": {"name_or_path": model},
            "evaluate": {"judge": "reward_model", "judge_reward_model": model},
            "oracle_tracks": [],
        },
    )


def test_prepare_names_an_unreachable_model(tmp_path):
    sources = tldr_sources(tmp_path / "src")
    proc = _prepare(tmp_path, _tldr_prepare_params(tmp_path, sources, "nobody/no-such-model"))
    assert "cannot load the base model 'nobody/no-such-model' (model.name_or_path)" in proc.stderr
    assert "local save_pretrained folder" in proc.stderr


def test_prepare_names_an_unreachable_dataset_and_missing_columns(tmp_path):
    base = make_base(tmp_path / "base", ["TL;DR: summary"] * 4)
    proc = _prepare(tmp_path, _tldr_prepare_params(tmp_path, {}, str(base)))
    assert "cannot reach vwxyzjn/summarize_from_feedback_tldr_3_filtered on the hub" in proc.stderr
    assert "set task.tldr.demos_path to a local" in proc.stderr

    sources = tldr_sources(tmp_path / "src")
    bad = write_jsonl(tmp_path / "no_summary.jsonl", [{k: v for k, v in tldr_demo(0).items() if k != "summary"}])
    shutil.rmtree(tmp_path / "ws")
    proc = _prepare(tmp_path, _tldr_prepare_params(tmp_path, {**sources, "demos_path": bad}, str(base)))
    assert f"{bad}: missing column(s) summary" in proc.stderr


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_tldr_runs_end_to_end_on_local_files(tmp_path):
    texts = [tldr_prompt("relationships", f"Title {i}", f"Post body {i}.\nSecond line.") + f" summary {i}" for i in range(40)]
    base = make_base(tmp_path / "pythia-like", texts, architecture="gpt_neox")  # no chat template, no pad token
    ws = tmp_path / "ws"
    ws.mkdir()
    repro_evaluations(ws, real_params("tldr", tldr_sources(tmp_path / "src"), base, make_judge(base, tmp_path / "judge")))
    _check_real_run(ws)

    train = read_jsonl(ws / "data/task/train.jsonl")
    for row in train:  # the upstream prompt, verbatim
        i = row["completion"][0]["content"].split()[-1]
        assert row["prompt"] == [msg("user", tldr_prompt("relationships", f"Title {i}", f"Post body {i}.\nSecond line."))]
    prefs = read_jsonl(ws / "data/task/heldout_prefs.jsonl")
    assert len(prefs) == 8
    for p in prefs:  # the human's choice survives: comparison(i, i % 2) chose summaries[i % 2]
        i = int(p["prompt"][0]["content"].split("POST: Compared post ")[1].split("\n")[0])
        assert p["chosen"][0]["content"] == ("first" if i % 2 == 0 else "second") + f" summary {i}"
    sft = _one(ws, "models/**/sft/policy")
    assert (sft / "model.safetensors").exists()  # SFT is the first full model
    from demo2reward.models.modeling import load_tokenizer

    tok = load_tokenizer(sft)
    text = tok.apply_chat_template(train[0]["prompt"] + train[0]["completion"], tokenize=False)
    assert text == train[0]["prompt"][0]["content"] + " " + train[0]["completion"][0]["content"] + EOS


@pytest.mark.slow
def test_ultrachat_runs_end_to_end_on_local_files(tmp_path):
    texts = [f"question {i} answer {i} follow-up {i} final {i} pref prompt good bad" for i in range(40)]
    base = make_base(tmp_path / "zephyr-like", texts, ZEPHYR_LIKE_TEMPLATE)
    ws = tmp_path / "ws"
    ws.mkdir()
    judge = make_judge(base, tmp_path / "judge")
    repro_evaluations(ws, real_params("ultrachat", ultrachat_sources(tmp_path / "src"), base, judge))
    _check_real_run(ws)

    train = read_jsonl(ws / "data/task/train.jsonl")
    assert all(len(r["prompt"]) == 1 and r["prompt"][0]["content"].startswith("question ") for r in train)  # first turn
    prefs = read_jsonl(ws / "data/task/heldout_prefs.jsonl")
    assert all(p["chosen"][0]["content"].startswith("good") and p["rejected"][0]["content"].startswith("bad") for p in prefs)
    assert _one(ws, "models/**/sft/policy").joinpath("model.safetensors").exists()
