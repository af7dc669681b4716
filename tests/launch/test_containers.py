"""The container path on the real local SLURM cluster: both launchers, 1 and 2 nodes.

"LUMI-like" is the lumi profile's `container`, `env` and `setup` sections over the local profile's
`slurm` and `devices`; "A100-like" the same with the a100 profile and Apptainer. The runtime is a
stand-in at the hardware boundary (tests/launch/standin_runtime.py); the image's environment is
read from the Dockerfile's ENV lines over the base image's environment stated below. All jobs are
submitted at once and share the session's cluster.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmo.launch.profile import repo_root
from tests.containers.common import image_env
from tests.helpers import SMALL_MODEL, read_metrics
from tests.launch.conftest import sacct_state, wait_gone

pytestmark = pytest.mark.slow

ROOT = repo_root()
CONFIG = str(ROOT / "configs" / "tiny.yaml")
STEPS = 3
TRAIN = [*SMALL_MODEL, f"--train.max_steps={STEPS}", "--train.log_interval=1"]
TRAIN += ["--checkpoint.interval=3", "--train.eval_holdout_instances=0", "--wandb.mode=disabled"]
PLUGIN_DIR = "/opt/aws-ofi-rccl/lib"
# The base images' own environment (docker inspect of the versions.env tags).
BASE_ENV = {
    "rocm": {
        "PATH": "/opt/venv/bin:/opt/rocm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LD_LIBRARY_PATH": "/opt/ompi/lib:/opt/rocm/lib:/usr/local/lib",
    },
    "cuda": {
        "PATH": "/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
    },
}


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> dict[str, Path]:
    """Runtime stand-ins on PATH, the images (JSON environments), the image's bin dir."""
    d = tmp_path_factory.mktemp("standin")
    (d / "bin").mkdir()
    (d / "image-bin").mkdir()
    (d / "log").mkdir()
    for runtime in ("singularity", "apptainer"):
        (d / "bin" / runtime).symlink_to(ROOT / "tests/launch/standin_runtime.py")
    py = d / "image-bin" / "python"
    py.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    py.chmod(0o755)
    (d / "image-bin" / "olmo-entrypoint").symlink_to(ROOT / "containers/entrypoint.sh")
    for vendor in ("rocm", "cuda"):
        env = image_env(vendor, BASE_ENV[vendor])
        (d / f"olmo-{vendor}.sif").write_text(json.dumps({"env": env}))
    return {"dir": d, "log": d / "log"}


def site_profile(d: Path, like: str, image: Path) -> Path:
    """`base: local` with the `like` profile's container, env and setup sections."""
    data = yaml.safe_load((ROOT / "cluster" / f"{like}.yaml").read_text())
    site = {"base": "local", "name": f"{like}-like", "setup": data.get("setup", [])}
    site["container"] = {**data["container"], "image": str(image)}
    # The one site value: gloo's interface here is loopback (hsn0/ib0 do not exist).
    site["env"] = {**data["env"], "GLOO_SOCKET_IFNAME": "lo"}
    path = d / f"{like}-like.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def job_env(standin: dict[str, Path]) -> dict[str, str]:
    d = standin["dir"]
    path = f"{d / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    return {
        **os.environ,
        "PATH": path,
        "OLMO_STANDIN_LOG": str(standin["log"]),
        "OLMO_STANDIN_IMAGE_BIN": str(d / "image-bin"),
    }


def submit(how: str, profile: Path, nodes: int, run: Path, env: dict, *extra: str) -> str:
    """`olmo launch` (submitit) or `olmo sbatch` + `sbatch`; returns the job id."""
    common = ["--cluster", str(profile), "--nodes", str(nodes), "--run-dir", str(run), *extra]
    olmo = [sys.executable, "-m", "olmo"]
    if how == "launch":
        out = subprocess.run(
            [*olmo, "launch", *common, CONFIG, *TRAIN], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return re.search(r"submitted job (\d+)", out.stdout).group(1)
    script = run.parent / f"{run.name}.sbatch"
    subprocess.run(
        [*olmo, "sbatch", *common, "-o", str(script), CONFIG, *TRAIN], env=env, check=True
    )
    out = subprocess.run(
        ["sbatch", "--parsable", f"--chdir={ROOT}", f"--output={run}.out", str(script)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().split(";")[0]


CASES = [
    ("lumi", "sbatch", 2),
    ("lumi", "sbatch", 1),
    ("lumi", "launch", 2),
    ("lumi", "launch", 1),
    ("a100", "launch", 2),
]


@pytest.fixture(scope="module")
def jobs(slurm_cluster: Path, standin, tmp_path_factory) -> dict[tuple, tuple[str, Path]]:
    """Every case submitted at once (the cluster runs them as nodes free up), then waited for."""
    d = tmp_path_factory.mktemp("container-runs")
    image = {"lumi": "olmo-rocm.sif", "a100": "olmo-cuda.sif"}
    env = job_env(standin)
    out = {}
    for like, how, nodes in CASES:
        prof = site_profile(d, like, standin["dir"] / image[like])
        run = d / f"{like}-{how}-{nodes}"
        out[(like, how, nodes)] = (submit(how, prof, nodes, run, env), run)
    for job, _ in out.values():
        wait_gone(job, 400)
    return out


def execs(standin: dict[str, Path], job: str) -> list[dict]:
    """The stand-in's records of one job's container execs."""
    recs = [json.loads(p.read_text()) for p in standin["log"].glob("exec-*.json")]
    return [r for r in recs if r["env"].get("SLURM_JOB_ID") == job]


def log_of(run: Path, job: str) -> str:
    if Path(f"{run}.out").exists():
        return Path(f"{run}.out").read_text()
    return "\n".join(p.read_text() for p in (run / "slurm").glob(f"{job}_*_log.*"))


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_container_profile_trains(jobs, standin, case):
    like, how, nodes = case
    job, run = jobs[case]
    assert sacct_state(job) == "COMPLETED", log_of(run, job)[-4000:]
    assert [r["step"] for r in read_metrics(run)] == list(range(1, STEPS + 1))
    info = json.loads((run / "env.json").read_text())
    assert info["world_size"] == nodes
    assert info["container"]["runtime"] == "apptainer"  # SINGULARITY_/APPTAINER_CONTAINER set
    recs = execs(standin, job)
    runtime = {"lumi": "singularity", "a100": "apptainer"}[like]
    # The doctor and the trainer (sbatch), or submitit's task runner: one exec per task each.
    assert len(recs) >= nodes and {r["runtime"] for r in recs} == {runtime}
    libs = info.get("network_env", {}).get("LD_LIBRARY_PATH", "").split(":")
    if like == "lumi":
        lumi_checks(recs, libs, job)
    assert all(r["argv"][0] == "olmo-entrypoint" for r in recs)
    assert "" not in libs, libs  # an empty entry would load libraries from the cwd


def lumi_checks(recs: list[dict], libs: list[str], job: str) -> None:
    """The RCCL OFI plugin dir reaches the trainer, with the host libraries before the image's;
    the binds Cray's libfabric needs; a private per-job MIOpen cache, removed afterwards."""
    for r in recs:
        assert PLUGIN_DIR in r["env"]["LD_LIBRARY_PATH"].split(":"), r["env"]["LD_LIBRARY_PATH"]
        assert {"/opt/cray/", "/usr/lib64/libjson-c.so.3"} <= set(r["binds"])
    assert PLUGIN_DIR in libs and libs.index("/opt/cray/pe/lib64") < libs.index(PLUGIN_DIR)
    cache = {r["env"]["MIOPEN_USER_DB_PATH"] for r in recs}
    assert len(cache) == 1, cache
    path = cache.pop()
    assert re.fullmatch(rf"/tmp/olmo-miopen-{job}-[0-9a-f]{{16}}", path), path
    assert not Path(path).exists(), "the job's MIOpen cache was not removed"


def test_doctor_bandwidth_floor_stops_the_job(slurm_cluster: Path, tmp_path: Path):
    """A floor above what loopback gloo reaches: the job fails before training, one line
    naming the nodes and the cause."""
    run = tmp_path / "run"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    job = submit("sbatch", Path("local"), 2, run, env, "--set=doctor.min_bus_gb_per_s=1000")
    wait_gone(job, 240)
    log = Path(f"{run}.out").read_text()
    assert sacct_state(job) == "FAILED", log[-3000:]
    lines = [x for x in log.splitlines() if x.startswith("doctor: FAILED")]
    assert len(lines) == 1, log[-3000:]
    assert re.search(
        r"slow link between nodes n\d and n\d: bus bandwidth [\d.]+ GB/s over sockets, "
        r"below doctor.min_bus_gb_per_s=1000",
        lines[0],
    ), lines[0]
    assert "not training" in log and not (run / "metrics.jsonl").exists()
