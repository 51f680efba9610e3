"""What a stage may do with models, from its params, passed down to every loader and sampler (never a global).

- `trust_remote_code`: consent to run a model's own Python code (transformers' `trust_remote_code`). Only the user's
  params give it: `model.trust_remote_code` for the pipeline's models (the base and everything trained from it),
  `evaluate.judge_trust_remote_code` for a judge model. A file inside a model folder never can, since a third-party
  folder could carry one.
- `vllm`: the `vllm` params when this stage generates with vLLM (a stage that lists the section, with it on), else
  None: HF generate, the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from demo2reward.core.params import Params, VLLMParams


@dataclass(frozen=True)
class Runtime:
    trust_remote_code: bool = False
    vllm: VLLMParams | None = None

    @classmethod
    def of(cls, params: Params, sections: tuple[str, ...] = ()) -> Runtime:
        """The runtime of a stage that reads `sections` of `params` (vLLM only where the stage lists `vllm`)."""
        vllm = params.vllm if "vllm" in sections and params.vllm.enabled else None
        return cls(trust_remote_code=params.model.trust_remote_code, vllm=vllm)
