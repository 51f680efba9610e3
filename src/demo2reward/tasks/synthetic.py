"""The embedded task: a synthetic "summarisation world" with a known true reward r*.

A post is a bag of content words; each word carries a hidden importance weight. A good summary names the
`summary_size` most salient words of the post and nothing else. An unlabelled pretraining corpus of
chatty replies gives the base model habits (filler words, rambling, repeats) that the expert never shows,
as a real base model's habits survive a short SFT. Those habits are token-local, so a small reward model
can *see* them in demo-vs-rollout pairs, while choosing the salient words stays hard to *generate*.

Its tables (`tasks.base`): the demonstrations and held-out demonstrations of a Boltzmann-rational expert;
held-out preference pairs labelled by a noisy Bradley-Terry labeller under r*; the same labeller on fresh prompts
(the training preferences of `reward.human_pairs`); and the pretraining corpus's chatter. `world.json` holds the
hidden weights, so that r*, the task's gold reward (`tasks.gold`, built-in `synthetic`), can be recomputed anywhere.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo2reward.core.artifacts import read_json, write_json
from demo2reward.core.conversation import conversation
from demo2reward.tasks.base import Task, TaskRows

FILLERS = ("um", "like", "basically", "literally", "so", "well")
WORDS = (
    "rain", "cat", "dog", "sun", "tree", "car", "book", "road", "fish", "moon", "bread", "king", "ship",
    "lamp", "wolf", "milk", "bell", "coin", "door", "frog", "gold", "hill", "iron", "jar", "kite", "leaf",
    "mask", "nest", "owl", "pear", "queen", "rock", "salt", "tent", "urn", "vase", "wind", "yarn", "zinc",
    "ant", "bee", "cow", "duck", "egg", "fox", "goat", "hat", "ice", "jam", "key", "lion", "map", "nut",
    "oak", "pig", "rat", "sea", "toy", "van", "web", "yak", "zoo", "axe", "bus",
)  # fmt: skip

# Penalties of r*, per offending token.
FILLER_PENALTY = 0.5
REPEAT_PENALTY = 0.5
OFF_POST_PENALTY = 0.5
OVERLENGTH_PENALTY = 0.25


@dataclass(frozen=True)
class World:
    """The hidden part of the task: which words matter, and how much."""

    words: tuple[str, ...]
    weights: tuple[float, ...]
    summary_size: int

    @property
    def weight(self) -> dict[str, float]:
        return dict(zip(self.words, self.weights, strict=True))

    def salient(self, post: str) -> list[tuple[str, float]]:
        """Post words by salience s(w, x) = weight(w) · count(w in x), highest first."""
        w = self.weight
        counts = Counter(t for t in post.split() if t in w)
        return sorted(((t, w[t] * c) for t, c in counts.items()), key=lambda p: (-p[1], p[0]))

    def true_reward(self, post: str, response: str) -> float:
        """r*(x, y) = coverage − 0.5·fillers − 0.5·repeats − 0.5·off-post words − 0.25·max(0, |y| − m).

        coverage = Σ_{w ∈ top_m(x), w ∈ y} s(w, x) / Σ_{w ∈ top_m(x)} s(w, x), with m = summary_size and
        s(w, x) = weight(w) · count(w in x). So the ideal summary, the m most salient words, scores 1.
        A repeat is any token occurrence after its first; an off-post word is any other token that is not
        in the post (fillers and unknown tokens included only once, as fillers or off-post).
        """
        tokens = response.split()
        top = self.salient(post)[: self.summary_size]
        total = sum(s for _, s in top) or 1.0
        said = set(tokens)
        coverage = sum(s for t, s in top if t in said) / total
        post_words = set(post.split())
        fillers = sum(t in FILLERS for t in tokens)
        repeats = len(tokens) - len(said)
        off_post = sum(1 for t in said if t not in post_words and t not in FILLERS)
        overlength = max(0, len(tokens) - self.summary_size)
        return (
            coverage
            - FILLER_PENALTY * fillers
            - REPEAT_PENALTY * repeats
            - OFF_POST_PENALTY * off_post
            - OVERLENGTH_PENALTY * overlength
        )

    def diagnostics(self, post: str, response: str) -> dict[str, float]:
        tokens = response.split()
        return {
            "fillers": float(sum(t in FILLERS for t in tokens)),
            "repeats": float(len(tokens) - len(set(tokens))),
            "length": float(len(tokens)),
        }

    def save(self, path: Path) -> None:
        write_json(path, {"words": list(self.words), "weights": list(self.weights), "summary_size": self.summary_size})

    @classmethod
    def load(cls, path: Path) -> World:
        d = read_json(path)
        return cls(tuple(d["words"]), tuple(d["weights"]), int(d["summary_size"]))


def _post(rng: np.random.Generator, world: World, distinct: int) -> str:
    words = rng.choice(len(world.words), size=distinct, replace=False)
    counts = rng.integers(1, 4, size=distinct)
    tokens = [world.words[w] for w, c in zip(words, counts, strict=True) for _ in range(c)]
    rng.shuffle(tokens)
    return " ".join(tokens)


def _candidates(world: World, post: str) -> list[str]:
    """What an expert considers: every ordered-by-salience subset of the post's words, up to m+1 long."""
    ranked = [w for w, _ in world.salient(post)]
    out = []
    for size in range(1, world.summary_size + 2):
        for combo in itertools.combinations(range(len(ranked)), size):
            out.append(" ".join(ranked[i] for i in combo))
    return out


def expert_response(rng: np.random.Generator, world: World, post: str, temperature: float) -> str:
    """A Boltzmann-rational expert: p(y | x) ∝ exp(r*(x, y) / T) over its candidate summaries."""
    cands = _candidates(world, post)
    r = np.array([world.true_reward(post, c) for c in cands])
    p = np.exp((r - r.max()) / temperature)
    return cands[rng.choice(len(cands), p=p / p.sum())]


def chatty_response(rng: np.random.Generator, post: str, filler_rate: float) -> str:
    """The pretraining corpus's reply style: rambling, repetitive, full of fillers, blind to salience."""
    post_words = post.split()
    length = int(rng.integers(3, 8))
    return " ".join(
        FILLERS[rng.integers(len(FILLERS))] if rng.random() < filler_rate else post_words[rng.integers(len(post_words))]
        for _ in range(length)
    )


class SyntheticTask(Task):
    """The embedded world: every table generated from `seed`, and r* (its `world.json`) as the gold reward."""

    name = "synthetic"

    def rows(self) -> TaskRows:
        """Every table, deterministically from `seed` (the draws happen in the order of the tables below)."""
        p, rng = self.params, np.random.default_rng(self.seed)
        words = WORDS[: p.n_words]
        weights = tuple(float(round(w, 3)) for w in rng.uniform(0.2, 1.0, size=len(words)))
        self.world = world = World(words, weights, p.summary_size)

        posts = [_post(rng, world, p.post_distinct) for _ in range(p.n_train + p.n_heldout + p.n_heldout_pairs)]
        train, heldout, pref_posts = (
            posts[: p.n_train],
            posts[p.n_train : p.n_train + p.n_heldout],
            posts[p.n_train + p.n_heldout :],
        )
        train_rows = [conversation(x, expert_response(rng, world, x, p.demo_temperature)) for x in train]
        heldout_rows = [conversation(x, expert_response(rng, world, x, p.demo_temperature)) for x in heldout]

        def pretrain_doc() -> dict:
            x = _post(rng, world, p.post_distinct)
            return conversation(x, chatty_response(rng, x, p.filler_rate))

        pretrain = [pretrain_doc() for _ in range(p.n_pretrain)]

        # Human-style pairs: two answers from different sources, labelled the way a noisy human would.
        sources = (
            lambda x: expert_response(rng, world, x, p.demo_temperature),
            lambda x: expert_response(rng, world, x, 1.0),
            lambda x: chatty_response(rng, x, p.filler_rate),
            lambda x: chatty_response(rng, x, p.filler_rate / 3),
        )

        def pref_pair(x: str) -> dict:
            a, b = rng.choice(len(sources), size=2, replace=False)
            ya, yb = sources[a](x), sources[b](x)
            margin = (world.true_reward(x, ya) - world.true_reward(x, yb)) / p.label_temperature
            a_wins = rng.random() < 1 / (1 + math.exp(-max(min(margin, 50), -50)))
            chosen, rejected = (ya, yb) if a_wins else (yb, ya)
            return {
                "prompt": [{"role": "user", "content": x}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }

        heldout_prefs = [pref_pair(x) for x in pref_posts]

        # Drawn last, so that every table above is the same whatever n_human_pairs is; no held-out prompt is reused.
        evaluated = set(pref_posts) | set(heldout)
        human_posts: list[str] = []
        while len(human_posts) < p.n_human_pairs:
            if (x := _post(rng, world, p.post_distinct)) not in evaluated:
                human_posts.append(x)
        human_prefs = [pref_pair(x) for x in human_posts]
        return TaskRows(train_rows, heldout_rows, heldout_prefs, human_prefs, pretrain)

    def write_files(self, out: Path) -> None:
        self.world.save(out / "world.json")

    def config(self) -> dict:
        fields = ("n_train", "n_heldout", "n_heldout_pairs", "n_human_pairs", "n_pretrain", "n_words", "post_distinct",
                  "summary_size", "demo_temperature", "label_temperature", "filler_rate")  # fmt: skip
        return {"seed": self.seed, **{f: getattr(self.params, f) for f in fields}}
