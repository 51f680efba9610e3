"""Evaluation: the metrics of one iterate, the LLM and reward-model judges, MT-Bench, the Open LLM Leaderboard, and
the report over seeds."""
