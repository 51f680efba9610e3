"""A user's own demonstrations through `dvc repro`, end to end on the real SmolLM2-135M-Instruct (micro sizes), in
the three shapes users hold them: a prompt/completion JSONL, a `messages` JSONL and a parquet with columns of its
own. The held-out rows must provably be the user's; a run without preference pairs must complete and say why it
has no reward accuracy; a gold reward defined here (a verifier of the arithmetic) must drive the true reward and
the oracle track; and the exported models, loaded with plain transformers in a fresh process, must answer and
score exactly as the pipeline's evaluation did.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from demo2reward.core.artifacts import read_jsonl
from demo2reward.presets import apply_preset
from tests.conftest import ROOT, copy_repo, deep_merge
from tests.test_real_pipeline import _env, _run
from tests.test_real_tasks import msg, write_jsonl, write_parquet

pytestmark = pytest.mark.slow
MODEL = ROOT / ".cache" / "smollm2-135m-instruct"
N_ROWS = 24

# The gold reward a user might write: a verifier. 1 if the answer states the right sum, else 0.
GOLD = """
import re

def arithmetic(prompts, completions):
    scores = []
    for prompt, answer in zip(prompts, completions):
        a, b = map(int, re.findall(r"\\d+", prompt)[:2])
        scores.append(1.0 if str(a + b) in re.findall(r"\\d+", answer) else 0.0)
    return scores

def raises(prompts, completions):
    raise RuntimeError("the verifier is down")

def nan(prompts, completions):
    return [float("nan")] * len(completions)

def one_short(prompts, completions):
    return [0.0] * (len(completions) - 1)
"""


def qa(i: int) -> tuple[str, str]:
    a, b = i % 10, i // 10 + 1
    return f"What is {a} plus {b}? Answer in one short sentence.", f"{a} plus {b} is {a + b}."


def micro(overrides: dict) -> dict:
    """The own-demos preset over the default params, at micro sizes, on the local SmolLM2 and `overrides`."""
    params = apply_preset(ROOT / "presets" / "own-demos.yaml", ROOT / "params.yaml")
    sizes = {
        "iterations": [{"k": 1, "prev": "../sft"}],
        "model": {"name_or_path": str(MODEL), "dtype": "float32"},
        "task": {"demos": {"n_train": 8, "n_heldout": 4}},
        "sft": {"batch_size": 4, "max_length": 256},
        "rollout": {"per_prompt": 2, "max_new_tokens": 16, "batch_size": 8},
        "reward": {"batch_size": 4, "eval_batch_size": 8, "validation_fraction": 0.25, "max_length": 256},
        "policy": {"steps": 1, "num_generations": 2, "batch_size": 4, "max_new_tokens": 16, "guards": {"gate_prompts": 4}},
        "spin": {"batch_size": 4, "max_new_tokens": 16, "max_length": 256},
        "evaluate": {"max_new_tokens": 16, "batch_size": 8},
    }
    return deep_merge(deep_merge(params, sizes), overrides)


def repro(ws: Path, params: dict) -> Path:
    from demo2reward.smollm2 import fetch_smollm2

    fetch_smollm2(MODEL)
    copy_repo(ws, params)
    env = _env()
    _run(["git", "init", "-q"], ws, env)
    _run(["git", "add", "-A"], ws, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], ws, env)
    _run(["dvc", "repro"], ws, env)
    return ws


def user_prompts(path: Path) -> set[str]:
    rows = read_jsonl(path) if path.suffix == ".jsonl" else None
    if rows is None:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    out = set()
    for r in rows:
        if "messages" in r:
            out.add(next(m["content"] for m in reversed(r["messages"]) if m["role"] == "user"))
        else:
            out.add(r.get("prompt") or r.get("question"))
    return out


def heldout_and_train(ws: Path) -> tuple[set[str], set[str]]:
    rows = {n: read_jsonl(ws / "data" / "task" / f"{n}.jsonl") for n in ("heldout", "train")}
    return tuple({r["prompt"][-1]["content"] for r in rows[n]} for n in ("heldout", "train"))


def stage_list(ws: Path) -> list[str]:
    return _run(["dvc", "stage", "list", "--name-only"], ws, _env()).stdout.split()


# ------------------------------------------------------------------------------- 1. a prompt/completion JSONL


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory):
    """A prompt/completion JSONL (TRL's standard format), no preference pairs, a gold reward of the user's; IRL and
    the oracle, no SPIN."""
    ws = tmp_path_factory.mktemp("own_jsonl")
    (ws / "data" / "raw").mkdir(parents=True)
    write_jsonl(ws / "data" / "raw" / "demos.jsonl", [{"prompt": q, "completion": a} for q, a in map(qa, range(N_ROWS))])
    (ws / "verifier.py").write_text(GOLD)
    params = micro({"spin_tracks": [], "oracle_tracks": ["oracle"], "task": {"gold_reward": "verifier:arithmetic",
                    "demos": {"path": "data/raw/demos.jsonl", "heldout_fraction": 0.25}}})  # fmt: skip
    copy = ws / "data" / "raw" / "demos.jsonl"
    saved = copy.read_bytes()
    repro(ws, params)
    assert copy.read_bytes() == saved
    return ws


def test_heldout_rows_are_the_users_own_and_none_is_trained_on(jsonl_run):
    heldout, train = heldout_and_train(jsonl_run)
    assert len(heldout) == 4 and len(train) == 8
    assert heldout | train <= user_prompts(jsonl_run / "data" / "raw" / "demos.jsonl") and not heldout & train
    info = json.loads((jsonl_run / "data" / "task" / "task.json").read_text())
    assert info["sources"]["train"]["path"] == "data/raw/demos.jsonl" and info["sources"]["heldout"]["heldout_fraction"] == 0.25


def test_a_run_without_pairs_completes_and_says_why_reward_accuracy_is_absent(jsonl_run):
    evals = {p.stem: json.loads(p.read_text()) for p in jsonl_run.glob("metrics/eval/seed_0/*.json")}
    assert set(evals) == {"sft", "irl_1", "oracle_1"}
    assert not any("reward_accuracy" in m for m in evals.values())
    assert "proxy_reward_mean" in evals["irl_1"] and isinstance(evals["irl_1"]["kl_to_sft"], float)
    report = (jsonl_run / "metrics" / "report.md").read_text()
    assert "**Reward accuracy is absent:** the task has no held-out preference pairs (task.demos.prefs_path: null)" in report
    assert not any(s.startswith("spin") for s in stage_list(jsonl_run))


def test_a_gold_reward_of_the_users_drives_the_true_reward_and_the_oracle(jsonl_run):
    evals = {p.stem: json.loads(p.read_text()) for p in jsonl_run.glob("metrics/eval/seed_0/*.json")}
    for name in ("sft", "irl_1", "oracle_1"):
        m = evals[name]
        assert 0 <= m["true_reward_mean"] <= 1 and 0 <= m["win_rate_vs_demos"] <= 1, (name, m)
    answers = read_jsonl(jsonl_run / "data" / "answers" / "seed_0" / "sft.jsonl")
    assert all(a["true_reward"] in (0.0, 1.0) for a in answers)
    # The verifier's verdict on each greedy answer, recomputed here, is what the pipeline recorded.
    sys.path.insert(0, str(jsonl_run))
    try:
        from verifier import arithmetic
    finally:
        sys.path.remove(str(jsonl_run))
    assert [a["true_reward"] for a in answers] == arithmetic([a["prompt"] for a in answers], [a["greedy"] for a in answers])
    oracle = json.loads((jsonl_run / "metrics" / "train" / "seed_0" / "oracle_1.json").read_text())
    assert oracle["oracle_scale"] > 0 and "train_loss" in oracle
    assert "oracle" in (jsonl_run / "metrics" / "report.md").read_text().lower()


@pytest.mark.parametrize(("name", "says"), [
    ("raises", "task.gold_reward: verifier:raises raised RuntimeError: the verifier is down (scoring 4 answers)"),
    ("nan", "task.gold_reward: verifier:nan returned nan for answer 0 of 4"),
    ("one_short", "task.gold_reward: verifier:one_short returned 3 scores for 4 answers"),
])  # fmt: skip
def test_a_broken_gold_reward_fails_prepare_in_one_line(jsonl_run, tmp_path, name, says):
    ws = tmp_path / "ws"
    copy_repo(ws)
    params = yaml.safe_load((jsonl_run / "params.yaml").read_text())
    params["task"]["gold_reward"] = f"verifier:{name}"
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (ws / "verifier.py").write_text(GOLD)
    (ws / "data" / "raw" / "demos.jsonl").write_bytes((jsonl_run / "data" / "raw" / "demos.jsonl").read_bytes())
    cmd = [sys.executable, "stages/prepare.py", "--data", "data/task", "--model", "models/init", "--metrics", "m.json"]
    proc = _run(cmd, ws, {**_env(), "PYTHONPATH": "src", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"prepare: error: {says}"), proc.stderr[-2000:]
    assert len([line for line in lines if line.startswith("prepare:")]) == 1 and "Traceback" not in proc.stderr
    assert not (ws / "data" / "task").exists() and not (ws / "models" / "init").exists()


EXPORT_CHECK = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

folder, answers_path, max_new_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
answers = [json.loads(line) for line in open(answers_path)]
tok = AutoTokenizer.from_pretrained(f"{folder}/policy")
policy = AutoModelForCausalLM.from_pretrained(f"{folder}/policy")
greedy = []
for a in answers:
    text = tok.apply_chat_template([{"role": "user", "content": a["prompt"]}], add_generation_prompt=True, tokenize=False)
    inputs = tok(text, return_tensors="pt", add_special_tokens=False)
    out = policy.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    greedy.append(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
rm_tok = AutoTokenizer.from_pretrained(f"{folder}/reward")
rm = AutoModelForSequenceClassification.from_pretrained(f"{folder}/reward")
classify = pipeline("text-classification", model=f"{folder}/reward")
scores, piped = [], []
for a in answers:
    turns = [{"role": "user", "content": a["prompt"]}, {"role": "assistant", "content": a["greedy"]}]
    text = rm_tok.apply_chat_template(turns, tokenize=False)
    with torch.no_grad():
        scores.append(rm(**rm_tok(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item())
    piped.append(classify(text, add_special_tokens=False, function_to_apply="none")[0]["score"])
print(json.dumps({"greedy": greedy, "scores": scores, "piped": piped, "padding_side": tok.padding_side}))
"""


def test_the_exported_models_answer_and_score_as_the_pipeline_did_in_a_fresh_process(jsonl_run, tmp_path):
    env = _env()
    out = tmp_path / "exported"
    export = Path(sys.executable).parent / "demo2reward-export"
    printed = _run([str(export), "--out", str(out)], jsonl_run, env).stdout
    assert f"policy: {out}/policy" in printed and f"reward: {out}/reward" in printed
    for folder in ("policy", "reward"):
        names = {p.name for p in (out / folder).iterdir()}
        assert {"README.md", "config.json", "model.safetensors", "demo2reward.json"} <= names and "manifest.json" not in names
    card = (out / "reward" / "README.md").read_text()
    assert "rescaled after training so that the rewards of (up to 512) training responses have unit" in card
    record = json.loads((out / "policy" / "demo2reward.json").read_text())
    assert record["base_model"]["name_or_path"] == str(MODEL) and record["data"]["sha256"]["train.jsonl"]
    assert record["params"]["reward"]["learning_rate"] == 1.0e-5 and record["metrics"]["iteration"] == 1

    answers = jsonl_run / "data" / "answers" / "seed_0" / "irl_1.jsonl"
    (tmp_path / "check.py").write_text(EXPORT_CHECK)
    proc = _run([sys.executable, str(tmp_path / "check.py"), str(out), str(answers), "16"], tmp_path, env)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    pipeline_answers = read_jsonl(answers)
    assert got["greedy"] == [a["greedy"] for a in pipeline_answers]
    proxy = json.loads((jsonl_run / "metrics" / "eval" / "seed_0" / "irl_1.json").read_text())["proxy_reward_mean"]
    assert sum(got["scores"]) / len(got["scores"]) == pytest.approx(proxy, abs=1e-4)
    assert got["piped"] == pytest.approx(got["scores"], abs=1e-5) and got["padding_side"] == "left"

    # A stale iterate is refused: the card would describe other weights than the ones beside it.
    params = yaml.safe_load((jsonl_run / "params.yaml").read_text())
    params["policy"]["beta"] = 0.2
    (jsonl_run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stale = _run([str(export), "--out", str(tmp_path / "stale")], jsonl_run, env, check=False)
    finally:
        params["policy"]["beta"] = 0.1
        (jsonl_run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stale.returncode == 1 and "policy@0-irl-from0" in stale.stderr and "changed since the models were" in stale.stderr
    assert not (tmp_path / "stale").exists()


# ----------------------------------------------------------------------------------- 2. a `messages` JSONL


@pytest.fixture(scope="module")
def messages_run(tmp_path_factory):
    """Dialogues whose last assistant turn is the demonstration, held-out rows from a file of the user's, and
    held-out preference pairs of the user's; SPIN and the oracle off."""
    ws = tmp_path_factory.mktemp("own_messages")
    raw = ws / "data" / "raw"
    raw.mkdir(parents=True)

    def dialogue(i: int) -> dict:
        q, a = qa(i)
        return {"messages": [msg("system", "You are a calculator."), msg("user", q), msg("assistant", a)]}

    write_jsonl(raw / "train.jsonl", [dialogue(i) for i in range(16)])
    write_jsonl(raw / "held.jsonl", [dialogue(100 + i) for i in range(6)])
    pairs = [{"prompt": qa(200 + i)[0], "chosen": qa(200 + i)[1], "rejected": "I cannot count."} for i in range(8)]
    write_jsonl(raw / "pairs.jsonl", pairs)
    demos = {"path": "data/raw/train.jsonl", "heldout_path": "data/raw/held.jsonl", "prefs_path": "data/raw/pairs.jsonl"}
    repro(ws, micro({"spin_tracks": [], "oracle_tracks": [], "task": {"demos": demos}}))
    return ws


def test_messages_keep_the_dialogue_before_the_last_reply_and_heldout_comes_from_the_named_file(messages_run):
    train = read_jsonl(messages_run / "data" / "task" / "train.jsonl")
    assert all(r["prompt"][0] == msg("system", "You are a calculator.") and len(r["prompt"]) == 2 for r in train)
    heldout, _ = heldout_and_train(messages_run)
    assert heldout <= user_prompts(messages_run / "data" / "raw" / "held.jsonl") and len(heldout) == 4
    pairs = read_jsonl(messages_run / "data" / "task" / "heldout_prefs.jsonl")
    assert {p["prompt"][0]["content"] for p in pairs} <= {qa(200 + i)[0] for i in range(8)}


def test_reward_accuracy_on_the_users_pairs_and_no_baseline_stage_when_they_are_off(messages_run):
    for name in ("sft", "irl_1"):
        m = json.loads((messages_run / "metrics" / "eval" / "seed_0" / f"{name}.json").read_text())
        assert 0 <= m["reward_accuracy"] <= 1 and "true_reward_mean" not in m
    stages = stage_list(messages_run)
    assert not [s for s in stages if s.startswith(("spin", "oracle", "evaluate_spin", "evaluate_oracle"))], stages
    report = (messages_run / "metrics" / "report.md").read_text()
    assert "SPIN" not in report and "The oracle track trains" not in report and "Reward accuracy is absent" not in report
    assert "absent:** the demos task has no gold reward (task.gold_reward: null)" in report


# -------------------------------------------------------------------------- 3. a parquet with its own columns


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory):
    """Columns named question/answer, mapped by params; SPIN on (the demonstration-only baseline on user data)."""
    ws = tmp_path_factory.mktemp("own_parquet")
    raw = ws / "data" / "raw"
    raw.mkdir(parents=True)
    rows = [{"id": i, "question": qa(i)[0], "answer": qa(i)[1]} for i in range(N_ROWS)]
    write_parquet(raw / "mine.parquet", rows)
    demos = {"path": "data/raw/mine.parquet", "columns": {"prompt": "question", "completion": "answer"}, "seed": 3,
             "heldout_fraction": 0.25}  # fmt: skip
    repro(ws, micro({"oracle_tracks": [], "task": {"demos": demos}}))
    return ws


def test_a_parquet_with_other_column_names_runs_with_spin(parquet_run):
    heldout, train = heldout_and_train(parquet_run)
    assert heldout | train <= user_prompts(parquet_run / "data" / "raw" / "mine.parquet") and not heldout & train
    evals = {p.stem for p in parquet_run.glob("metrics/eval/seed_0/*.json")}
    assert evals == {"sft", "irl_1", "spin_1"}
    assert "| SPIN " in (parquet_run / "metrics" / "report.md").read_text()
