"""Benchmarks: how fast miniclip trains and evaluates, against open_clip and against this machine's ceiling."""
