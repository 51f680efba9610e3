"""Plumbing every stage runs: the params schema, the stage wrapper, artifacts on disk, the conversational schema,
where the iterates live, and hub access."""
