"""Consent to run a model's own Python code (transformers' `trust_remote_code`).

Only the user's params can give it: `model.trust_remote_code` for the pipeline's models (the base and everything
trained from it), `evaluate.judge_trust_remote_code` for a judge model. `stage()` records the first; a file inside a
model folder never can, since a third-party folder could carry one.
"""

from __future__ import annotations

_trusted = False


def grant(trusted: bool) -> None:
    global _trusted
    _trusted = bool(trusted)


def trusted() -> bool:
    return _trusted
