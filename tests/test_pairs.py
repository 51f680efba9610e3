from demo2reward.loop.pairs import build_pairs, pool_pairs


def _row(demo, sample):
    return {
        "prompt": [{"role": "user", "content": "cat dog"}],
        "demonstration": [{"role": "assistant", "content": demo}],
        "completion": [{"role": "assistant", "content": sample}],
    }


def test_identical_pairs_are_dropped_and_counted():
    pairs, stats = build_pairs([_row("cat dog", "cat  dog"), _row("cat dog", "um cat"), _row("cat", "cat")])
    assert stats == {"pairs": 1, "identical_dropped": 2, "rollouts": 3}
    assert pairs[0]["chosen"][0]["content"] == "cat dog" and pairs[0]["rejected"][0]["content"] == "um cat"


def test_pool_accumulates_or_replaces():
    old, new = [{"id": 1}], [{"id": 2}]
    assert pool_pairs(old, new, accumulate=True) == [{"id": 1}, {"id": 2}]
    assert pool_pairs(old, new, accumulate=False) == [{"id": 2}]
