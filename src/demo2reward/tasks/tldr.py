"""TL;DR summarisation, the paper's first task: Reddit posts, reference summaries, and OpenAI's human comparisons.

- demonstrations: ``vwxyzjn/summarize_from_feedback_tldr_3_filtered``, splits train / validation;
- held-out preferences: ``openai/summarize_from_feedback`` config ``comparisons``, split validation, or the
  preprocessed ``vwxyzjn/summarize_from_feedback_oai_preprocessing_1706381144`` (recognised by its ``query``
  column; set ``prefs_config: null``);
- training preferences (``n_human_pairs`` > 0): the comparisons' ``train`` split, minus evaluated prompts.

The comparison summaries carry a leading space (a GPT-2 tokenisation habit: the summary continues ``TL;DR:``
directly); responses are stripped, and the plain chat template adds the space back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from demo2reward.tasks.base import Row
from demo2reward.tasks.sources import Converted, message, pair, text
from demo2reward.tasks.upstream import UpstreamTask

# The prompt of "Learning to summarize from human feedback" (OpenAI's summarize-from-feedback tasks.py), verbatim.
TLDR_PROMPT_FORMAT = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
# Batches of the `comparisons` validation split that hold CNN/DM articles, not Reddit posts (the same list that
# built the preprocessed dataset's `validation_cnndm` split).
TLDR_CNNDM_BATCHES = frozenset({"batch0_cnndm", "cnndm0", "cnndm2"})
_EOS_SUFFIX = "<|endoftext|>"  # appended to chosen/rejected by the preprocessed TL;DR dataset (Pythia's EOS)
_PAD_PREFIX = re.compile(r"^(?:\s|\[PAD\])+")  # left padding of the preprocessed `query`, if it survived decoding


def tldr_prompt(subreddit: str, title: str, post: str) -> str:
    """The upstream TL;DR prompt, exactly (the policy is asked to continue after ``TL;DR:``)."""
    return TLDR_PROMPT_FORMAT.format(subreddit=subreddit, title=title, post=post)


def _comparison(raw: Row) -> Converted:
    """openai/summarize_from_feedback `comparisons`: chosen = summaries[choice], the human's pick."""
    info = raw["info"]
    if raw.get("batch") in TLDR_CNNDM_BATCHES or not info.get("post"):
        return "no Reddit post (CNN/DM article)"
    summaries, choice = raw["summaries"], raw["choice"]
    if len(summaries) != 2 or choice not in (0, 1):
        raise ValueError(f"expected 2 summaries and choice 0 or 1, got {len(summaries)} summaries and choice {choice!r}")
    prompt = tldr_prompt(text(info["subreddit"], "info.subreddit"), text(info["title"], "info.title"), info["post"])
    return pair(
        [message("user", prompt)],
        text(summaries[choice]["text"], "summaries.text"),
        text(summaries[1 - choice]["text"], "summaries.text"),
    )


def _preprocessed(raw: Row) -> Converted:
    """The vwxyzjn OAI-preprocessed comparisons: `query` is the formatted (possibly post-truncated) prompt.

    Its `chosen`/`rejected` are ``summaries[choice].text + "<|endoftext|>"``; the EOS marker is removed.
    """
    query = _PAD_PREFIX.sub("", text(raw["query"], "query")).rstrip()
    if not query:
        return "empty prompt"

    def clean(value: Any, what: str) -> str:
        return text(value, what).strip().removesuffix(_EOS_SUFFIX)

    return pair([message("user", query)], clean(raw["chosen"], "chosen"), clean(raw["rejected"], "rejected"))


class TLDRTask(UpstreamTask):
    name = "tldr"
    demo_columns: ClassVar[Sequence[str]] = ("subreddit", "title", "post", "summary")

    def demo(self, raw: Row) -> Converted:
        prompt = tldr_prompt(text(raw["subreddit"], "subreddit"), text(raw["title"], "title"), text(raw["post"], "post"))
        summary = text(raw["summary"], "summary").strip()
        if not summary:
            return "empty response"
        return {"prompt": [message("user", prompt)], "completion": [message("assistant", summary)]}

    def pref(self, raw: Row) -> Converted:
        return _preprocessed(raw) if "query" in raw else _comparison(raw)

    def pref_columns(self, columns: frozenset[str]) -> Sequence[str]:
        """The preprocessed variant is recognised by its `query` column; anything else must be the raw comparisons."""
        return ("query", "chosen", "rejected") if "query" in columns else ("info", "summaries", "choice")
