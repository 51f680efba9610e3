"""The conversational schema of every data file (TRL's): a prompt is a list of messages, a completion a list with
one assistant message. These helpers convert between it and plain text."""

from __future__ import annotations


def conversation(post: str, response: str | None = None) -> dict:
    row = {"prompt": [{"role": "user", "content": post}]}
    if response is not None:
        row["completion"] = [{"role": "assistant", "content": response}]
    return row


def assistant_turns(texts: list[str]) -> list[list[dict]]:
    """Each text as a one-message assistant completion (the conversational schema)."""
    return [[{"role": "assistant", "content": t}] for t in texts]


def prompt_text(prompt: list[dict] | str) -> str:
    """The user turn of a conversational prompt (or the prompt itself if it is plain text)."""
    if isinstance(prompt, str):
        return prompt
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")


def dialogue_text(prompt: list[dict] | str) -> str:
    """A prompt as a judge reads it: the user's text for a single turn, else the whole dialogue, turn by turn."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def response_text(completion: list[dict] | str) -> str:
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"]


def as_generated(completions: list) -> list[list[dict]]:
    """RL completions as the pipeline's own generations render them (stripped, one assistant message).

    TRL decodes an RL completion unstripped (" word" after a prompt ending in "TL;DR:"), while rollouts, pairs
    and demonstrations are stripped; the reward model must score the text it was trained on, so both go through
    the same normalisation before the chat template adds its own spacing.
    """
    return assistant_turns([response_text(c).strip() for c in completions])
