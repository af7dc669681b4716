from __future__ import annotations

import pytest

from olmo.train.config import SchedulerConfig
from olmo.train.optim import lr_factor


@pytest.mark.parametrize("decay", ["linear", "cosine", "inv_sqrt", "constant"])
def test_warmup_then_decay_to_floor(decay):
    cfg = SchedulerConfig(decay=decay, warmup_steps=10, final_lr_ratio=0.1)
    f = [lr_factor(s, cfg, 100) for s in range(1, 101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=True))  # warm-up rises
    assert all(a >= b - 1e-12 for a, b in zip(f[9:-1], f[10:], strict=True))  # then never rises
    assert min(f) >= 0.1 - 1e-12
    if decay in ("linear", "cosine"):
        assert f[-1] == pytest.approx(0.1)


def test_linear_midpoint():
    cfg = SchedulerConfig(decay="linear", warmup_steps=0, decay_steps=100, final_lr_ratio=0.0)
    assert lr_factor(50, cfg, 1000) == pytest.approx(0.5)
    assert lr_factor(500, cfg, 1000) == pytest.approx(0.0)
