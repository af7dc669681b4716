"""The energy: config section: defaults, overrides from cluster profiles, one-line errors."""

from __future__ import annotations

import pytest

from olmo.config.loader import describe
from olmo.config.schema import Config, load_config
from olmo.errors import OlmoError


def test_defaults_and_profile_overrides():
    cfg = load_config("configs/tiny.yaml")
    assert (cfg.energy.enabled, cfg.energy.interval_ms, cfg.energy.backend) == (True, 100, "auto")
    assert cfg.energy.pue == 1.1
    cfg = load_config(
        "configs/tiny.yaml", ["--energy.pue=1.2", "--energy.carbon_intensity_g_per_kwh=0"]
    )
    assert (cfg.energy.pue, cfg.energy.carbon_intensity_g_per_kwh) == (1.2, 0.0)
    assert any(
        line.strip().startswith("energy.interval_ms (int, default 100)")
        for line in describe(Config)
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--energy.pue=0.9", "energy.pue"),
        ("--energy.interval_ms=0", "energy.interval_ms"),
        ("--energy.backend=nvidia", "energy.backend"),
        ("--energy.carbon_intensity_g_per_kwh=-1", "energy.carbon_intensity_g_per_kwh"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(OlmoError, match=message.replace(".", r"\.")):
        load_config("configs/tiny.yaml", [override])
