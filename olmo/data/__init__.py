"""Data: prepare token shards, a memory-mapped dataset and a deterministic, resumable loader."""
