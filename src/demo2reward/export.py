"""The aligned model out: one iterate's policy and reward model as plain Hugging Face folders, with model cards.

    demo2reward-export                                   # IRL's final iterate, first seed -> exports/irl-k<K>-seed<S>
    demo2reward-export --track irl --k 2 --seed 1 --out exports/mine
    demo2reward-export --push-to-hub you/my-aligned-model   # also uploads both (untested here: no hub access)

`<out>/policy` loads with `AutoModelForCausalLM` (and `pipeline("text-generation")`), `<out>/reward` with
`AutoModelForSequenceClassification` (and `pipeline("text-classification")`), and both score exactly as inside the
pipeline: its chat template renders the conversation, which is tokenised without special tokens; greedy answers
are `generate(..., do_sample=False)` with the pipeline's EOS, and a reward is the model's single logit.

Each folder's README.md (the model card) gives the base model and its revision, the data and its SHA-256, the
params, that iterate's metrics and, for the reward model, how its head is standardised; `demo2reward.json` holds the
same in machine-readable form. The export refuses an iterate that `dvc status` says is stale: a card must describe
the weights beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

from demo2reward.core import iterates
from demo2reward.core.artifacts import MANIFEST, atomic_dir, read_json, repo_root
from demo2reward.core.params import IRL_TRACKS, Params, ParamsError, load_params

POLICY_SECTIONS = {
    "sft": ("task", "model", "sft", "evaluate"),
    "spin": ("task", "model", "sft", "spin", "evaluate"),
    "oracle": ("task", "model", "sft", "policy", "evaluate"),
}
IRL_SECTIONS = ("task", "model", "sft", "rollout", "pairs", "reward", "policy", "loop", "evaluate")
NOT_EXPORTED = {MANIFEST, iterates.STOPPED, "training_args.bin"}


class ExportError(RuntimeError):
    """The iterate asked for does not exist, is stale, or cannot be written."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stage_names(track: str, k: int, seed: int) -> list[str]:
    """The DVC stages that write iterate k of `track` for `seed`, and its evaluation."""
    if track == "sft":
        return [f"sft@{seed}", f"evaluate_sft@{seed}"]
    if track in ("spin", "oracle"):
        return [f"{track}@{seed}-{track}-from{k - 1}", f"evaluate_{track}@{seed}-{track}-from{k - 1}"]
    return [f"{s}@{seed}-{track}-from{k - 1}" for s in ("reward", "policy", "evaluate")]


def check_up_to_date(root: Path, stages: list[str]) -> None:
    """Fail unless DVC says these stages (and everything upstream of them) match the params, code and data."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        changed = repo.status(targets=stages, with_deps=True)
    if changed:
        names = ", ".join(sorted(changed)[:4]) + (" and more" if len(changed) > 4 else "")
        raise ExportError(
            f"dvc status: {names} changed since the models were written; run `dvc repro` first, so that the card "
            "describes the weights beside it"
        )


def _iterate(track: str, k: int, seed: int, params: Params) -> Path:
    if seed not in params.seeds:
        raise ExportError(f"--seed {seed}: not one of params seeds {params.seeds}")
    running = ("sft", *params.irl_tracks, *params.spin_tracks, *params.oracle_tracks)
    if track not in running:
        raise ExportError(f"--track {track}: not a track of this run ({', '.join(running)})")
    if track == "sft":
        return Path("models") / f"seed_{seed}" / "sft"
    if not 1 <= k <= params.K:
        raise ExportError(f"--k {k}: the run has iterations 1..{params.K}")
    return Path("models") / f"seed_{seed}" / track / f"iter_{k}"


def _copy_model(source: Path, out: Path) -> None:
    """The model's own files, readable by anyone (the trainers write 0600), without the pipeline's bookkeeping."""
    for f in sorted(source.iterdir()):
        if f.is_file() and f.name not in NOT_EXPORTED:
            shutil.copyfile(f, out / f.name)
            os.chmod(out / f.name, 0o644)
    config = out / "tokenizer_config.json"
    if config.exists():  # transformers does not save a padding side set after loading; batched generation needs left
        tokenizer = json.loads(config.read_text())
        tokenizer["padding_side"] = "left"
        config.write_text(json.dumps(tokenizer, indent=2) + "\n")


def _pin_generation(out: Path) -> None:
    """Plain `generate` stops where the pipeline's sampler does: at the tokenizer's EOS, padding with its pad token."""
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(out)
    try:
        generation = GenerationConfig.from_pretrained(out)
    except OSError:
        generation = GenerationConfig()
    generation.eos_token_id, generation.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    generation.save_pretrained(out)


def _pin_reward_padding(out: Path) -> None:
    """A batched reward score needs the pad id to find each sequence's last token."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(out)
    config.pad_token_id = AutoTokenizer.from_pretrained(out).pad_token_id
    config.save_pretrained(out)


def _base(root: Path, params: Params) -> dict:
    pointer = root / "models" / "init" / "base_model.json"
    if pointer.exists():
        base = json.loads(pointer.read_text())
        return {"name_or_path": base["name_or_path"], "revision": base.get("revision") or "main (unpinned)"}
    m = params.model
    sizes = f"{m.num_hidden_layers} layers, hidden {m.hidden_size}, {m.num_attention_heads} heads"
    return {"name_or_path": f"a tiny Llama built by prepare ({sizes}), pretrained on the embedded task's corpus"}


def _data(root: Path) -> dict:
    task_dir = root / "data" / "task"
    info = read_json(task_dir / "task.json")
    files = {name: _sha256(task_dir / name) for name in ("train.jsonl", "heldout.jsonl") if (task_dir / name).exists()}
    return {"task": info["name"], "tables": info["tables"], "sources": info.get("sources", {}), "sha256": files,
            "gold_reward": info.get("gold_reward")}  # fmt: skip


def provenance(root: Path, params: Params, track: str, k: int, seed: int) -> dict:
    """What the card says, in machine-readable form (also written as demo2reward.json)."""
    stem = "sft" if track == "sft" else f"{track}_{k}"
    evaluation = read_json(root / "metrics" / "eval" / f"seed_{seed}" / f"{stem}.json")
    sections = IRL_SECTIONS if track in IRL_TRACKS else POLICY_SECTIONS[track]
    record = {
        "track": track,
        "iteration": k,
        "seed": seed,
        "base_model": _base(root, params),
        "data": _data(root),
        "params": {s: getattr(params, s).model_dump(mode="json") for s in sections} | {"iterations": params.K},
        "metrics": evaluation,
    }
    if track in IRL_TRACKS:
        fit = read_json(root / "metrics" / "train" / f"seed_{seed}" / f"reward_{track}_{k}.json")
        record["reward_standardisation"] = {key: fit[key] for key in ("score_std_before", "score_mean_before") if key in fit} | {
            "carried_forward": bool(fit.get("carried_forward"))
        }
    stopped = iterates.stopped_at(root / _iterate(track, k, seed, params))
    if stopped is not None:
        record["stopped_at"] = stopped
    return record


def _yaml(obj) -> str:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).rstrip()


def _metrics_table(metrics: dict) -> str:
    rows = [f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items()) if isinstance(v, int | float) and k not in ("seed",)]
    return "\n".join(["| metric | value |", "|---|---|", *rows])


def policy_card(record: dict) -> str:
    base, data = record["base_model"], record["data"]
    name = {"sft": "SFT (iterate 0)", "spin": "SPIN", "oracle": "the oracle (RL on the gold reward)"}
    which = name.get(record["track"], f"IRL ({record['track']})")
    hub_base = base["name_or_path"] if "/" in base["name_or_path"] and " " not in base["name_or_path"] else None
    front = {"library_name": "transformers", "pipeline_tag": "text-generation", "tags": ["demo2reward", "irl", "alignment"]}
    if hub_base:
        front["base_model"] = hub_base
    stopped = ""
    if "stopped_at" in record:
        stopped = f" The loop stopped at iteration {record['stopped_at']} (adaptive K): this is that policy."
    return f"""---
{_yaml(front)}
---

# Policy: {which}, iteration {record["iteration"]}, training seed {record["seed"]}

Trained by [demo2reward](https://arxiv.org/abs/2503.13538)-style inverse RL from demonstrations alone: supervised
fine-tuning on the demonstrations, then {record["iteration"]} round(s) of *roll out → pair each demonstration (chosen)
with a rollout (rejected) → fit a Bradley–Terry reward model → RL against it with a KL penalty* (track
`{record["track"]}`).{stopped}

## Base model

- {base["name_or_path"]}
- revision: {base.get("revision", "–")}

## Data

- task: `{data["task"]}`; rows: {", ".join(f"{k} {v}" for k, v in data["tables"].items())}
- sha256 of the prepared demonstrations: {", ".join(f"`{k}` {v}" for k, v in data["sha256"].items())}
- sources:

```yaml
{_yaml(data["sources"]) if data["sources"] else "generated by the task itself"}
```

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(FOLDER)
model = AutoModelForCausalLM.from_pretrained(FOLDER)
messages = [{{"role": "user", "content": "..."}}]
text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)  # the template has its own tokens
out = model.generate(**inputs, max_new_tokens={record["params"]["evaluate"]["max_new_tokens"]}, do_sample=False)
answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
```

This is how the pipeline generated its greedy answers (left padding for batches: the tokenizer is saved with it).

## Metrics of this iterate (held-out prompts, `metrics/eval`)

{_metrics_table(record["metrics"])}

## Params

```yaml
{_yaml(record["params"])}
```
"""


def reward_card(record: dict) -> str:
    std = record.get("reward_standardisation", {})
    front = {"library_name": "transformers", "pipeline_tag": "text-classification",
             "tags": ["demo2reward", "reward-model", "bradley-terry"]}  # fmt: skip
    base = record["base_model"]["name_or_path"]
    if "/" in base and " " not in base:
        front["base_model"] = base
    scale = (
        f"Its score head was rescaled after training so that the rewards of (up to 512) training responses have unit "
        f"standard deviation: the raw std was {std['score_std_before']:.4g} (mean {std['score_mean_before']:.4g}), and "
        "the head's weights were divided by it. The offset was not removed: compare rewards (differences, rankings), do "
        "not threshold them; RLOO and GRPO subtract a per-prompt baseline, so the KL coefficient β meant the same thing "
        "in every iteration."
        if "score_std_before" in std
        else "This reward model was carried forward from an earlier iteration (see demo2reward.json)."
    )
    return f"""---
{_yaml(front)}
---

# Reward model: {record["track"]}, iteration {record["iteration"]}, training seed {record["seed"]}

A Bradley–Terry reward model (one scalar logit), fitted with TRL's `RewardTrainer` on pairs of a demonstration
(chosen) against a rollout of the previous policy (rejected), pooled over iterations 1..{record["iteration"]}. The
policy of the same iterate was trained against it.

## Standardisation of the head

{scale}

## Use

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

tokenizer = AutoTokenizer.from_pretrained(FOLDER)
model = AutoModelForSequenceClassification.from_pretrained(FOLDER)
messages = [{{"role": "user", "content": "..."}}, {{"role": "assistant", "content": "..."}}]
text = tokenizer.apply_chat_template(messages, tokenize=False)
with torch.no_grad():
    reward = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()

# or: pipeline("text-classification", model=FOLDER)(text, add_special_tokens=False, function_to_apply="none")
```

This is exactly how the pipeline scored (its chat template, no extra special tokens, the raw logit).

## Metrics of this iterate

Its accuracy on held-out human preference pairs (`reward_accuracy`; on pairs of two policy samples ranked by the
gold reward, `_policy_pairs`) and its mean reward of the policy's greedy and sampled answers (`proxy_reward_mean`):

{_metrics_table({k: v for k, v in record["metrics"].items() if k.startswith(("reward_accuracy", "proxy_reward"))})}

## Base model and data

- base: {base} (revision {record["base_model"].get("revision", "–")})
- data: task `{record["data"]["task"]}`, demonstrations sha256 {record["data"]["sha256"].get("train.jsonl", "–")}

## Params

```yaml
{_yaml(record["params"])}
```
"""


def export(root: Path, params: Params, track: str, k: int, seed: int, out: Path, check: bool = True) -> dict[str, Path]:
    """Write `out`/policy (and `out`/reward for an IRL track) with their cards; return the folders written."""
    iterate = _iterate(track, k, seed, params)
    if check:
        check_up_to_date(root, stage_names(track, k, seed))
    record = provenance(root, params, track, k, seed)
    written = {}
    folders = {"policy": iterates.policy(root / iterate)}
    if track in IRL_TRACKS:
        folders["reward"] = iterates.reward(root / iterate)
    for name, source in folders.items():
        if not source.is_dir():
            raise ExportError(f"{source}: not found; run `dvc repro` (or `dvc pull`) first")
        with atomic_dir(out / name) as tmp:
            _copy_model(source, tmp)
            if name == "policy":
                _pin_generation(tmp)
            else:
                _pin_reward_padding(tmp)
            (tmp / "README.md").write_text(policy_card(record) if name == "policy" else reward_card(record))
            (tmp / "demo2reward.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        written[name] = out / name
    return written


def push_to_hub(folders: dict[str, Path], repo: str, private: bool) -> list[str]:
    """Upload the policy to `repo` and the reward model to `repo`-reward through huggingface_hub (untested here)."""
    from huggingface_hub import HfApi

    api = HfApi()
    urls = []
    for name, folder in folders.items():
        repo_id = repo if name == "policy" else f"{repo}-reward"
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="demo2reward export")
        urls.append(f"https://huggingface.co/{repo_id}")
    return urls


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--track", default=None, help="sft, an IRL track, spin or oracle (default: the first of irl_tracks)")
    ap.add_argument("--k", type=int, default=None, help="the iteration (default: the final one, K)")
    ap.add_argument("--seed", type=int, default=None, help="the training seed (default: the first of seeds)")
    ap.add_argument("--out", type=Path, default=None, help="default: exports/<track>-k<k>-seed<seed>")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--push-to-hub", metavar="REPO", help="also upload: the policy to REPO, the reward model to REPO-reward")
    ap.add_argument("--private", action="store_true", help="with --push-to-hub: create private repositories")
    args = ap.parse_args(argv)
    try:
        params = load_params(args.params)
        track = args.track or params.irl_tracks[0]
        k = 0 if track == "sft" else (args.k if args.k is not None else params.K)
        seed = params.seeds[0] if args.seed is None else args.seed
        out = args.out or Path("exports") / f"{track}-k{k}-seed{seed}"
        folders = export(repo_root(), params, track, k, seed, out)
    except (ParamsError, ExportError, OSError) as err:
        sys.exit(f"demo2reward-export: {err}")
    for name, folder in folders.items():
        print(f"{name}: {folder}")
    if args.push_to_hub:
        for url in push_to_hub(folders, args.push_to_hub, args.private):
            print(f"pushed: {url}")


if __name__ == "__main__":
    main()
