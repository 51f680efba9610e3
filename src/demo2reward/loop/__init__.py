"""Algorithm 1, one module per step: `sft` (iterate 0), then for k = 1..K `rollout`, `pairs`, `reward` (Bradley-Terry)
and `policy` (RL with a KL penalty), with the optional collapse `guards`; the baselines `spin` (iterated DPO) and
`oracle` (RL on r*, the upper bound)."""
