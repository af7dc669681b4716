"""Cross-vendor parity: numerical fingerprints, their comparison, run comparison, a collective check.

`olmo parity fingerprint` records what one training step computes on a device (activation, logits,
loss, gradient and update statistics from bit-identical starting weights and data);
`olmo parity compare` says whether two fingerprints agree within documented tolerances;
`olmo parity runs` compares two training runs' data order and loss curves; `collective` holds the
all-reduce checksum `olmo doctor` runs on every rank.
"""
