"""UltraChat dialogues as demonstrations, UltraFeedback's binarised pairs as held-out preferences (SPIN's setting).

- demonstrations: ``HuggingFaceH4/ultrachat_200k``, splits train_sft / test_sft, either the first exchange
  (``turns: first_turn``, SPIN's setting) or the last assistant reply with the dialogue before it as prompt
  (``all_turns``);
- held-out preferences: ``HuggingFaceH4/ultrafeedback_binarized``, split test_prefs (whole dialogues: their last
  assistant turns are compared); training preferences (``n_human_pairs`` > 0): its train_prefs split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from demo2reward.tasks.base import Row
from demo2reward.tasks.sources import Converted, dialogue_pair, message, messages, split_at_assistant
from demo2reward.tasks.upstream import UpstreamTask


class UltraChatTask(UpstreamTask):
    name = "ultrachat"
    demo_columns: ClassVar[Sequence[str]] = ("messages",)

    def demo(self, raw: Row) -> Converted:
        which = "first" if self.options.turns == "first_turn" else "last"
        split = split_at_assistant(messages(raw["messages"], "messages"), which)
        if isinstance(split, str):
            return split
        prompt, answer = split
        answer = answer.strip()
        if not answer:
            return "empty response"
        return {"prompt": prompt, "completion": [message("assistant", answer)]}

    def pref(self, raw: Row) -> Converted:
        return dialogue_pair(messages(raw["chosen"], "chosen"), messages(raw["rejected"], "rejected"))

    def pref_columns(self, columns: frozenset[str]) -> Sequence[str]:
        return ("chosen", "rejected")
