import numpy as np
import pytest

from demo2reward.core.artifacts import read_jsonl
from demo2reward.core.params import TaskParams
from demo2reward.tasks.gold import GoldReward, load_gold_reward, win_rate
from demo2reward.tasks.prepare import SyntheticTask, write_task
from demo2reward.tasks.synthetic import World, expert_response

WORLD = World(words=("cat", "dog", "sun", "tree", "car"), weights=(1.0, 0.5, 0.8, 0.2, 0.3), summary_size=2)
POST = "cat dog dog dog sun tree"  # salience: dog 1.5, cat 1.0, sun 0.8, tree 0.2


def test_salience_ranks_weight_times_count():
    assert [w for w, _ in WORLD.salient(POST)] == ["dog", "cat", "sun", "tree"]


def test_true_reward_ranks_hand_built_responses_as_documented():
    r = lambda y: WORLD.true_reward(POST, y)  # noqa: E731
    assert r("dog cat") == pytest.approx(1.0)  # the ideal summary
    assert r("dog") == pytest.approx(1.5 / 2.5)  # partial coverage
    assert r("dog cat sun") == pytest.approx(1.0 - 0.25)  # one word too many
    assert r("dog um cat") == pytest.approx(1.0 - 0.5 - 0.25)  # a filler (also overlong)
    assert r("dog dog") == pytest.approx(1.5 / 2.5 - 0.5)  # a repeat
    assert r("dog car") == pytest.approx(1.5 / 2.5 - 0.5)  # an off-post word
    assert r("dog cat") > r("dog cat sun") > r("dog") > r("dog dog") and r("dog cat") > r("dog um cat")


def test_expert_is_good_but_noisy():
    rng = np.random.default_rng(0)
    sharp = [WORLD.true_reward(POST, expert_response(rng, WORLD, POST, 0.05)) for _ in range(200)]
    noisy = [WORLD.true_reward(POST, expert_response(rng, WORLD, POST, 1.0)) for _ in range(200)]
    assert np.mean(sharp) > 0.9 > np.mean(noisy)


def _r_star(world: World) -> GoldReward:
    return GoldReward("synthetic", lambda xs, ys: [world.true_reward(x, y) for x, y in zip(xs, ys, strict=True)])


def test_gold_win_rate_counts_ties_half():
    gold = _r_star(WORLD)
    posts = [POST] * 4
    ours = ["dog cat", "dog", "dog cat", "um"]
    refs = ["dog", "dog cat", "cat dog", "um"]
    assert win_rate(gold(posts, ours), gold(posts, refs)) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)


def build_task(p: TaskParams, seed: int, out) -> dict[str, int]:
    out.mkdir(parents=True)
    task = SyntheticTask(p, seed)
    return write_task(task, task.rows(), "synthetic", out)


def test_build_task_is_deterministic_and_in_hf_schemas(tmp_path):
    p = TaskParams(n_train=20, n_heldout=5, n_heldout_pairs=30, n_pretrain=10)
    build_task(p, 3, tmp_path / "a")
    build_task(p, 3, tmp_path / "b")
    for name in ("train.jsonl", "heldout.jsonl", "heldout_prefs.jsonl", "pretrain.jsonl", "world.json", "task.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    demo = read_jsonl(tmp_path / "a" / "train.jsonl", required=("prompt", "completion"))[0]
    assert demo["prompt"][0]["role"] == "user" and demo["completion"][0]["role"] == "assistant"
    prefs = read_jsonl(tmp_path / "a" / "heldout_prefs.jsonl", required=("prompt", "chosen", "rejected"))
    gold = load_gold_reward("synthetic", tmp_path / "a")
    posts = [r["prompt"][0]["content"] for r in prefs]
    chosen = gold(posts, [r["chosen"][0]["content"] for r in prefs])
    rejected = gold(posts, [r["rejected"][0]["content"] for r in prefs])
    assert np.mean(chosen > rejected) > 0.7  # a noisy but mostly right labeller


def test_human_pairs_are_fresh_prompts_by_the_same_labeller_and_change_no_other_file(tmp_path):
    """reward.human_pairs' pool: labelled like the held-out pairs, on prompts that are never evaluated, and drawn
    last, so that growing it leaves every other file of the task byte-identical."""
    small = TaskParams(n_train=20, n_heldout=5, n_heldout_pairs=30, n_pretrain=10, n_human_pairs=0)
    counts = build_task(small, 3, tmp_path / "none")
    build_task(small.model_copy(update={"n_human_pairs": 200}), 3, tmp_path / "some")
    assert counts["human_pairs"] == 0 and read_jsonl(tmp_path / "none" / "human_prefs.jsonl", allow_empty=True) == []
    for name in ("train.jsonl", "heldout.jsonl", "heldout_prefs.jsonl", "pretrain.jsonl", "world.json"):
        assert (tmp_path / "none" / name).read_bytes() == (tmp_path / "some" / name).read_bytes()
    human = read_jsonl(tmp_path / "some" / "human_prefs.jsonl", required=("prompt", "chosen", "rejected"))
    assert len(human) == 200
    evaluated = {
        r["prompt"][0]["content"] for f in ("heldout.jsonl", "heldout_prefs.jsonl") for r in read_jsonl(tmp_path / "some" / f)
    }
    posts = [r["prompt"][0]["content"] for r in human]
    assert not evaluated & set(posts)
    gold = load_gold_reward("synthetic", tmp_path / "some")
    chosen = gold(posts, [r["chosen"][0]["content"] for r in human])
    rejected = gold(posts, [r["rejected"][0]["content"] for r in human])
    assert 0.7 < np.mean(chosen > rejected) < 1  # the same noisy labeller: mostly right, not always
