"""Collapse guards for later iterations, neither of which needs an oracle (so both work on real tasks).

In scouting, each new reward model learned the current policy's *signature* rather than the reward, and
RL then hacked it. Two guards:

- `MinOverRewardModels`: the policy's reward is the minimum over the reward models of all iterations so
  far, each standardised on the same reference responses, so a response must look good to every RM.
- `acceptance_gate`: a policy update is kept only if the frozen earlier reward models do not score the new
  policy's greedy answers below the current policy's; otherwise the current policy is carried forward.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from demo2reward.core.conversation import as_generated, assistant_turns
from demo2reward.core.runtime import Runtime
from demo2reward.models.generation import generate, score
from demo2reward.models.modeling import load_policy, load_reward_model, load_tokenizer


class MinOverRewardModels:
    """TRL reward function: min_j (RM_j(x, y) − μ_j) / σ_j over the given reward models.

    μ_j and σ_j are RM_j's mean and std on `reference` (prompt, completion) pairs, e.g. demonstrations plus
    the current policy's rollouts, so that the RMs' scales and offsets are comparable.
    """

    __name__ = "min_over_reward_models"

    def __init__(
        self,
        paths: list[Path],
        reference_prompts: list[list[dict]],
        reference_completions: list[list[dict]],
        runtime: Runtime = Runtime(),
    ):
        trust = runtime.trust_remote_code
        self.models = [(load_reward_model(p, trust_remote_code=trust), load_tokenizer(p, trust)) for p in paths]
        self.stats = []
        for model, tok in self.models:
            s = score(model, tok, reference_prompts, reference_completions)
            self.stats.append((float(s.mean()), float(s.std()) or 1.0))

    def scores(self, prompts: list[list[dict]], completions: list[list[dict]]) -> np.ndarray:
        """Standardised scores, one row per reward model."""
        return np.stack(
            [
                (score(model, tok, prompts, completions) - mu) / sd
                for (model, tok), (mu, sd) in zip(self.models, self.stats, strict=True)
            ]
        )

    def __call__(self, prompts, completions, **_) -> list[float]:
        return self.scores(list(prompts), as_generated(completions)).min(axis=0).tolist()


def acceptance_gate(
    candidate: Path,
    current: Path,
    frozen_reward_models: list[Path],
    prompts: list[list[dict]],
    max_new_tokens: int,
    tolerance: float = 0.0,
    runtime: Runtime = Runtime(),
) -> tuple[bool, dict[str, float]]:
    """Accept `candidate` unless some frozen RM scores its greedy answers below `current`'s (mean, minus tolerance)."""
    if not frozen_reward_models:
        return True, {"gate_accepted": 1.0}
    answers = {}
    trust = runtime.trust_remote_code
    for name, path in (("candidate", candidate), ("current", current)):
        answers[name] = [
            g[0]
            for g in generate(
                load_policy(path, trust),
                load_tokenizer(path, trust),
                prompts,
                max_new_tokens=max_new_tokens,
                temperature=None,
                desc=f"gate {name}",
                vllm=runtime.vllm,
                trust_remote_code=trust,
            )
        ]
    details: dict[str, float] = {}
    accepted = True
    for path in frozen_reward_models:
        model, tok = load_reward_model(path, trust_remote_code=trust), load_tokenizer(path, trust)
        delta = float(
            score(model, tok, prompts, assistant_turns(answers["candidate"])).mean()
            - score(model, tok, prompts, assistant_turns(answers["current"])).mean()
        )
        details[f"gate_delta_{path.parent.name}"] = delta
        accepted &= delta >= -tolerance
    details["gate_accepted"] = float(accepted)
    return accepted, details
