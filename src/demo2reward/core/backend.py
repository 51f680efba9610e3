"""Which engine generates in this stage process: HF generate (None, the default) or vLLM (the `vllm` params).

`stage()` sets it once, before any compute, for a stage that lists the `vllm` section and turns it on;
`models.generation` reads it on every call.
"""

from __future__ import annotations

vllm = None  # VLLMParams when vLLM generates
