"""Tasks: the embedded synthetic world with its true reward r*, the real TL;DR and UltraChat loaders, and the
`prepare` stage that writes either in the same files."""
