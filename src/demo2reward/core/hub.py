"""Hub access shared by the real-task loaders and the leaderboard: honouring offline mode at call time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def offline_requested() -> bool:
    """HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set to a true value now."""
    return any(
        os.environ.get(n, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for n in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


@contextlib.contextmanager
def hub_offline(enabled: bool) -> Iterator[None]:
    """Switch `datasets` and `huggingface_hub` to offline mode for one call.

    Both libraries read HF_HUB_OFFLINE once, at import; setting the variable later (as a stage or a test does)
    has no effect on its own. Offline, an uncached hub id fails at once instead of after huggingface_hub's
    five retries with backoff (about 25 s when DNS fails). Not thread-safe: it flips module globals.
    """
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE) = saved
