"""`olmo energy estimate`: a full run's energy and CO2e from a measured J/token ("MWh for 2T tokens").

J/token measured on a short run of another model size is scaled by the parameter-count ratio
(training FLOPs per token ≈ 6 × parameters); measure on the target model for the best estimate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olmo.config.loader import from_dict, read_yaml
from olmo.config.schema import Config
from olmo.errors import OlmoError
from olmo.inputs import check_record


def site_facts(cfg: Config, cluster: str | None) -> tuple[float, float]:
    """(PUE, gCO2e/kWh) from a cluster profile's energy section, else the config's."""
    if cluster is None:
        return cfg.energy.pue, cfg.energy.carbon_intensity_g_per_kwh
    from olmo.launch.profile import EnergySection, read_profile_data

    # The raw profile: its account/image placeholders don't matter here.
    data, source = read_profile_data(cluster)
    if not isinstance(data.get("energy"), dict):
        raise OlmoError(f"{source}: no 'energy:' section (pue, carbon_intensity_g_per_kwh)")
    e = from_dict(EnergySection, data["energy"], "energy", source)
    return e.pue, e.carbon_intensity_g_per_kwh


def measured(run_dir: Path) -> dict[str, Any]:
    """J/token, device-hours/token and parameter count of a measured run."""
    path = run_dir / "energy.json"
    fix = "run `olmo train` with energy enabled"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise OlmoError(f"{path}: cannot read ({e}); {fix}") from None
    check_record(data, str(path), {"totals": dict}, fix)
    t = data.get("totals", {})
    num = (int, float, type(None))
    check_record(
        t, f"{path}: totals", dict.fromkeys(("j_per_token", "device_hours", "tokens"), num), fix
    )
    if not t.get("j_per_token"):
        raise OlmoError(
            f"{path}: no measured J/token (backends unavailable: {data.get('unavailable')})"
        )
    params = None
    cfg_file = run_dir / "config.yaml"
    if cfg_file.is_file():
        cfg = from_dict(Config, read_yaml(cfg_file), source=str(cfg_file)).resolve()
        params = cfg.model.num_params()
    hours = t["device_hours"] / t["tokens"] if t.get("tokens") and t.get("device_hours") else None
    return {"j_per_token": t["j_per_token"], "device_hours_per_token": hours, "params": params}


def estimate(cfg: Config, tokens: float, pue: float, carbon: float, run_dir: str | None = None,
             j_per_token: float | None = None) -> dict[str, Any]:  # fmt: skip
    if tokens <= 0:
        raise OlmoError(f"--tokens must be > 0, got {tokens}")
    params = cfg.model.num_params()
    out: dict[str, Any] = {"tokens": tokens, "params": params, "pue": pue,
                           "carbon_intensity_g_per_kwh": carbon}  # fmt: skip
    if run_dir is not None:
        m = measured(Path(run_dir))
        scale = params / m["params"] if m["params"] else 1.0
        j_per_token = m["j_per_token"] * scale
        out.update(measured_run=str(run_dir), measured_j_per_token=m["j_per_token"],
                   measured_params=m["params"], param_scale=scale)  # fmt: skip
        if m["device_hours_per_token"] is not None:
            out["device_hours"] = m["device_hours_per_token"] * scale * tokens
    assert j_per_token is not None
    if j_per_token <= 0:
        raise OlmoError(f"--j-per-token must be > 0, got {j_per_token}")
    it_mwh = j_per_token * tokens / 3.6e9
    out.update(j_per_token=j_per_token, it_mwh=it_mwh, facility_mwh=it_mwh * pue,
               co2e_t=it_mwh * pue * carbon / 1000)  # fmt: skip
    return out


def format_estimate(e: dict[str, Any]) -> str:
    lines = [f"model: {e['params']:,} parameters, {e['tokens']:.4g} tokens"]
    if "measured_run" in e:
        lines.append(f"measured: {e['measured_j_per_token']:.4g} J/token in {e['measured_run']} "
                     f"({e['measured_params']:,} parameters; scaled ×{e['param_scale']:.4g})")  # fmt: skip
    lines.append(f"J/token: {e['j_per_token']:.4g}")
    lines.append(
        f"energy: {e['it_mwh']:.4g} MWh IT, {e['facility_mwh']:.4g} MWh with PUE {e['pue']}"
    )
    lines.append(f"CO2e: {e['co2e_t']:.4g} t at {e['carbon_intensity_g_per_kwh']} g/kWh")
    if "device_hours" in e:
        lines.append(f"device-hours: {e['device_hours']:.4g} (at the measured run's throughput)")
    return "\n".join(lines)
