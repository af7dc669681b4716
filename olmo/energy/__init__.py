"""Energy and power measurement of training runs: backends, per-node sampler, energy.json."""
