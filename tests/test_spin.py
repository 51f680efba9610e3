"""SPIN at micro sizes: pairs are demo ≻ own sample, and the DPO reference is the previous iterate."""

import math

import numpy as np

from demo2reward.core.params import SpinParams
from demo2reward.loop.spin import spin_pairs, spin_round
from tests.test_policy import _save


def _demo(post, answer):
    return {"prompt": [{"role": "user", "content": post}], "completion": [{"role": "assistant", "content": answer}]}


def test_spin_pairs_put_the_demonstration_first(tmp_path):
    previous = _save(tmp_path / "prev", 0)
    demos = [_demo("cat dog sun", "cat dog"), _demo("tree car", "tree")]
    pairs, stats = spin_pairs(previous, demos, SpinParams(max_new_tokens=4), seed=0)
    assert stats["rollouts"] == 2 and stats["pairs"] + stats["identical_dropped"] == 2
    for pair in pairs:
        demo = next(d for d in demos if d["prompt"] == pair["prompt"])
        assert pair["chosen"] == demo["completion"] and pair["rejected"] != demo["completion"]


def test_spin_round_starts_at_the_reference(tmp_path):
    """With the reference equal to the starting iterate, the first DPO loss is exactly ln 2."""
    previous = _save(tmp_path / "prev", 0)
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "sun", "tree", "car"]
    pairs = [
        {
            "prompt": [{"role": "user", "content": " ".join(rng.choice(words, 3))}],
            "chosen": [{"role": "assistant", "content": "cat"}],
            "rejected": [{"role": "assistant", "content": "um dog"}],
        }
        for _ in range(4)
    ]
    p = SpinParams(learning_rate=1e-9, batch_size=4, epochs=1)
    metrics = spin_round(previous, pairs, p, tmp_path / "out", seed=0, max_length=32)
    assert math.isclose(metrics["train_loss"], math.log(2), rel_tol=1e-3)
    assert (tmp_path / "out" / "config.json").exists()
