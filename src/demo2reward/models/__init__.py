"""Models: the locally trained tokenizer and tiny Llama, real bases through pointers, loading, batched inference
(generation, reward scores, log-probabilities) and the settings of every TRL trainer."""
