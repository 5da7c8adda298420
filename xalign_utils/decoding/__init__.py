"""Decoding: fast greedy generation with shared-prefix caches, steering processors and
lexically constrained beam search (notebooks 02 and 06)."""
