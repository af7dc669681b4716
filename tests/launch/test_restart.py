"""Launch and restart policy against the real local SLURM cluster (slow: real jobs, real requeues).

All runs train the same small model for the same steps on 2 ranks, so every interrupted run must
end bitwise equal to the uninterrupted reference, with every step in metrics.jsonl exactly once.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olmo.checkpoint.io import load_model, parameter_digest
from olmo.launch.profile import repo_root
from olmo.logbook import read_events
from tests.distributed.launch import read_records
from tests.helpers import SMALL, olmo, read_metrics
from tests.launch.conftest import crash_node, rank0_node, sacct_state, wait_gone

pytestmark = pytest.mark.slow

STEPS = 40
TRAIN = [*SMALL, f"--train.max_steps={STEPS}", "--train.log_interval=1", "--wandb.mode=disabled"]
CONFIG = str(repo_root() / "configs" / "tiny.yaml")


def digest(run: Path) -> str:
    return parameter_digest(load_model(run / "checkpoints" / f"step{STEPS}"))


def assert_every_step_once(run: Path, n: int = STEPS) -> list[dict]:
    steps = [r["step"] for r in read_metrics(run)]
    assert steps == list(range(1, n + 1)), f"steps logged: {steps}"
    return read_metrics(run)


def submit_launch(run: Path, *extra: str) -> str:
    out = olmo(
        "launch",
        "--cluster",
        "local",
        CONFIG,
        "--nodes",
        "2",
        "--run-dir",
        str(run),
        *extra,
        *TRAIN,
    ).stdout
    return re.search(r"submitted job (\d+)", out).group(1)


def submit_sbatch(
    run: Path, *sets: str, train: list[str] = TRAIN, env: dict[str, str] | None = None
) -> str:
    """Render the local profile's script (plain sbatch path) and submit it (with `env` added)."""
    script = run.parent / f"{run.name}.sbatch"
    olmo(
        "sbatch",
        "--cluster",
        "local",
        *sets,
        "--run-dir",
        str(run),
        "-o",
        str(script),
        CONFIG,
        *train,
    )
    return sbatch(script, run.parent / f"{run.name}-%j.out", env or {})


def sbatch(script: Path, output: Path, env: dict[str, str]) -> str:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    proc = subprocess.run(
        ["sbatch", "--parsable", f"--chdir={repo_root()}", f"--output={output}", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path, **env},
        check=True,
    )
    return proc.stdout.strip().split(";")[0]


def wait_for(pred, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def bench_environment() -> dict:
    """The fields every benchmark record carries (bench/common.py)."""
    sys.path.insert(0, str(repo_root() / "bench"))
    from common import environment

    return environment()


def assert_resumed(run: Path, log: str, attempt: int) -> int:
    """Attempt `attempt` started right after a committed checkpoint (not from scratch) and said
    which one: its first step is that checkpoint's step + 1, and the log names the checkpoint."""
    first = [r for r in read_metrics(run) if r["attempt"] == attempt][0]["step"]
    found = [(p, int(s)) for p, s in re.findall(r"resumed from (\S+) at step (\d+)", log)]
    assert (str(run / "checkpoints" / f"step{first - 1}"), first - 1) in found, (first, found)
    assert first > 1, "the requeued job started again from step 1"
    return first


def node_state(node: str) -> str:
    out = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def committed(run: Path, step: int) -> bool:
    return (run / "checkpoints" / f"step{step}" / "COMMITTED.json").exists()


def result_of(run: Path, job: str) -> tuple:
    with open(run / "slurm" / f"{job}_0_result.pkl", "rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def reference(slurm_cluster: Path, tmp_path_factory) -> tuple[Path, str]:
    """The uninterrupted run: `olmo launch --cluster local configs/tiny.yaml --nodes 2 --wait`."""
    run = tmp_path_factory.mktemp("ref") / "run"
    out = olmo(
        "launch",
        "--cluster",
        "local",
        CONFIG,
        "--nodes",
        "2",
        "--run-dir",
        str(run),
        "--wait",
        *TRAIN,
        timeout=300,
    ).stdout
    return run, out


def test_launch_two_ranks_on_two_nodes(reference):
    run, out = reference
    assert re.search(r"submitted job \d+", out) and "logs: " in out
    results = json.loads(out.strip().splitlines()[-1])
    assert sorted((r["rank"], r["node"]) for r in results) == [(0, "n1"), (1, "n2")]
    assert_every_step_once(run)
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 2 and env["slurm"]["SLURM_NNODES"] == "2"
    assert env["slurm"]["SLURM_JOB_NODELIST"] == "n[1-2]"


def test_node_failure_requeues_resumes_and_matches(healthy_cluster, reference, tmp_path):
    """Crash the node running rank 0 after a checkpoint; SLURM requeues, the run resumes on the
    other nodes and ends bitwise equal; a later preemption requeues it without the failed node."""
    run = tmp_path / "run"
    job = submit_sbatch(run, "--set=doctor=false")
    wait_for(lambda: committed(run, 10), 120, "checkpoint step 10")
    # a few steps past it, for the logbook's redone steps
    wait_for(lambda: read_records(run, torn_tail=True)[-1]["step"] >= 12, 60, "step 12")
    node = wait_for(lambda: rank0_node(job), 10, "rank 0's node")
    crash_node(healthy_cluster, node, job)
    t_kill = time.time()
    time.sleep(0.5)  # what the killed attempt logged last (a torn line is skipped)
    killed_last = [r for r in read_records(run, torn_tail=True) if r["attempt"] == 1][-1]
    first = wait_for(
        lambda: [r for r in read_metrics(run) if r["attempt"] == 2], 180, "a resumed step"
    )[0]
    resume_s = first["time"] - t_kill
    log_path = tmp_path / f"run-{job}.out"
    assert_resumed(run, log_path.read_text(), 2)
    # The failed node comes back (idle, so it could be allocated); preempt the job (USR2): it
    # must requeue without that node.
    subprocess.run(
        ["bash", str(repo_root() / "cluster/local/up.sh"), "--root", str(healthy_cluster)],
        capture_output=True,
        check=True,
    )
    wait_for(lambda: node_state(node) in ("idle", "mixed"), 60, f"{node} idle again")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_gone(job, 240)
    assert_resumed(run, log_path.read_text(), 3)
    assert sacct_state(job) == "COMPLETED"
    assert (run / "failed_nodes.txt").read_text().split() == [node]
    nodelists = (run / "slurm_nodes.txt").read_text().split()
    assert len(nodelists) >= 3 and all(
        node
        not in subprocess.run(
            ["scontrol", "show", "hostnames", nl], capture_output=True, text=True
        ).stdout.split()
        for nl in nodelists[1:]
    )
    metrics = assert_every_step_once(run)
    assert {r["attempt"] for r in metrics} >= {1, 2, 3}
    assert digest(run) == digest(reference[0])
    resume = assert_logbook_of_node_failure(run, node, killed_last, first["step"] - 1)
    record = {
        "benchmark": "slurm_restart",
        "kill_to_first_resumed_step_s": round(resume_s, 1),
        # the requeued attempt's own account (#19): process start → first step, in parts
        "seconds_to_first_step": round(resume["seconds_to_first_step"], 2),
        "resume_breakdown_s": {k: round(v, 2) for k, v in resume["breakdown"].items()},
        "redone_steps": resume["redone_steps"],
        "goal_s": 60,
        "nodes": 2,
        "slurmd_timeout_s": 5,
        "cred_expire_s": 10,
        **bench_environment(),  # device, torch, commit (+dirty), load average, date
    }
    print(json.dumps(record))
    if os.environ.get("OLMO_BENCH_OUT"):
        with open(os.environ["OLMO_BENCH_OUT"], "a") as f:
            f.write(json.dumps(record) + "\n")


def assert_logbook_of_node_failure(run: Path, node: str, killed_last: dict, from_step: int) -> dict:
    """The logbook (#19): attempt 1 killed at its last logged step, the node named by the batch
    script, the steps since the checkpoint redone, the resume's start-up broken down, the
    preemption a requeue that excluded the node; goodput (`olmo logbook`) strictly in (0, 1)."""
    events = read_events(run)
    ends = {e["attempt"]: e for e in events if e["event"] == "attempt_end"}
    assert ends[1]["detail"] == {"reason": "killed", "inferred": True}
    # its end is its last sign of life: its last metrics record or its ranks' last event (a
    # checkpoint committed after that record), not the next job's node_failure booked to it
    own = [e["time"] for e in events if e["attempt"] == 1 and e["rank"] is not None]
    assert ends[1]["time"] == max(killed_last["time"], *own)
    assert ends[2]["detail"]["reason"] == "requeue_signal" and "USR2" in ends[2]["detail"]["cause"]
    assert ends[max(ends)]["detail"]["reason"] == "completed"
    failed = [(e["attempt"], e["detail"]["nodes"]) for e in events if e["event"] == "node_failure"]
    assert failed == [(1, [node])]
    excluded = [e for e in events if e["event"] == "excluded_nodes"]
    assert excluded and all(e["detail"]["nodes"] == [node] for e in excluded)
    (resume,) = [e["detail"] for e in events if e["event"] == "resume" and e["attempt"] == 2]
    assert resume["from_step"] == from_step
    assert resume["redone_steps"] == killed_last["step"] - from_step >= 2
    parts = resume["breakdown"]
    assert parts["checkpoint_load_s"] > 0 and parts["startup_s"] > 0 and parts["first_step_s"] > 0
    assert abs(sum(parts.values()) - resume["seconds_to_first_step"]) < 0.02
    starts = [e["detail"] for e in events if e["event"] == "attempt_start"]
    assert starts[0]["nodes"] == ["n1", "n2"] and all(node not in s["nodes"] for s in starts[1:])
    totals = json.loads(olmo("logbook", str(run), "--json").stdout)
    assert 0 < totals["goodput"] < 1, totals
    return resume


def test_preemption_scontrol_requeue_and_submitit_interrupt(healthy_cluster, reference, tmp_path):
    """`scontrol requeue` (SIGTERM) and then submitit's interrupt (USR2): checkpoint, requeue,
    resume; no lost or repeated steps; same final weights."""
    import submitit

    run = tmp_path / "run"
    job = submit_launch(run)
    wait_for(
        lambda: len(read_metrics(run)) >= 12 if (run / "metrics.jsonl").exists() else 0,
        120,
        "12 steps",
    )
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for(lambda: [r for r in read_metrics(run) if r["attempt"] == 2], 120, "attempt 2")
    submitit.SlurmJob(run / "slurm", job)._interrupt()
    wait_gone(job, 240)
    assert result_of(run, job)[0] == "success"
    metrics = assert_every_step_once(run)
    assert {r["attempt"] for r in metrics} == {1, 2, 3}
    log = "\n".join(p.read_text() for p in (run / "slurm").glob(f"{job}_*_log.*"))
    assert assert_resumed(run, log, 2) < assert_resumed(run, log, 3)
    assert digest(run) == digest(reference[0])
    lines = (run / "attempts.jsonl").read_text().splitlines()
    counts = [json.loads(x)["slurm_restart_count"] for x in lines]
    assert counts == [0, 1, 2]


def test_walltime_stops_at_the_margin_not_before(healthy_cluster, tmp_path):
    """Walltime: the trainer reads the job's end time from squeue and trains until
    `walltime_margin_s` before it, then checkpoints and exits 75 (no restarts allowed here, so the
    job ends there). Fails if it stops early (e.g. a margin counted twice) or late."""
    run = tmp_path / "run"
    margin = 80  # of a 2-minute limit: about 40 s of the attempt are left to train
    train = [*TRAIN, "--train.max_steps=100000", f"--train.walltime_margin_s={margin}"]
    job = submit_sbatch(
        run, "--set=doctor=false", "--set=restart.max_restarts=0", "--time=2", train=train
    )
    end = wait_for(lambda: squeue_end(job), 60, "the job's end time in squeue")
    wait_gone(job, 240)
    log = (tmp_path / f"run-{job}.out").read_text()
    assert "olmo: trainer exited with 75" in log and "restart limit reached" in log, log[-3000:]
    last = read_metrics(run)[-1]
    deadline = end - margin
    # The check runs at every step boundary (steps take well under a second here).
    assert deadline - 3 <= last["time"] <= deadline + 5, (last["time"] - deadline, log[-2000:])
    assert committed(run, last["step"]) and "SLURM walltime near" in log


def squeue_end(job: str) -> float | None:
    """The job's end time (epoch seconds) once it runs."""
    out = subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%T %e"], capture_output=True, text=True
    ).stdout.split()
    if len(out) != 2 or out[0] != "RUNNING":
        return None
    return time.mktime(time.strptime(out[1], "%Y-%m-%dT%H:%M:%S"))


def test_crash_loop_stops_at_restart_limit(healthy_cluster, tmp_path):
    """A job that fails the same way every time (watchdog exit 86) stops after max_restarts."""
    run = tmp_path / "run"
    job = submit_sbatch(
        run,
        "--set=doctor=false",
        "--set=restart.max_restarts=1",
        train=[*TRAIN, "--train.watchdog_timeout_s=0.01"],
    )
    wait_gone(job, 240)
    log = (tmp_path / f"run-{job}.out").read_text()
    assert "olmo: restart limit reached: job" in log and "restarted 1 times" in log
    assert log.count("olmo: trainer exited with 86") == 2
    assert sacct_state(job) == "FAILED"
    assert len((run / "attempts.jsonl").read_text().splitlines()) == 2
    # the batch script ends each hung attempt in the logbook (the trainer could not)
    ends = [(e["attempt"], e["detail"]) for e in read_events(run) if e["event"] == "attempt_end"]
    assert ends == [(a, {"reason": "hang", "exit_code": 86}) for a in (1, 2)], ends


def test_rendered_local_script_completes_with_plain_sbatch(healthy_cluster, tmp_path):
    job = sbatch(
        repo_root() / "slurm" / "local.sbatch",
        tmp_path / "job.out",
        {"OLMO_RUN_DIR": str(tmp_path / "run")},
    )
    wait_gone(job, 240)
    log = (tmp_path / "job.out").read_text()
    assert sacct_state(job) == "COMPLETED", log[-2000:]
    assert '"doctor": "ok"' in log and '"nodes": ["n1", "n2"]' in log
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, 21))


def test_straggler_is_excluded_at_the_next_requeue(healthy_cluster, tmp_path):
    """#20.2 on the local cluster: 4 ranks on 2 nodes, rank 3 slowed 3× from step 3 with
    `restart.exclude_stragglers` on: its node is named (logbook `straggler`, failed_nodes.txt);
    a preemption (USR2) requeues the job without that node."""
    run = tmp_path / "run"
    train = [*TRAIN, "--train.straggler.factor=1.5", "--train.straggler.intervals=2"]
    sets = [
        "--set=doctor=false",
        "--set=devices.per_node=2",
        "--set=restart.exclude_stragglers=true",
    ]
    drill = {"OLMO_FAULT_INJECT": "slow@rank=3,factor=3,from=3"}
    job = submit_sbatch(run, *sets, train=train, env=drill)
    failed = run / "failed_nodes.txt"
    wait_for(lambda: failed.is_file() and failed.read_text().split(), 150, "a straggler excluded")
    (node,) = failed.read_text().split()
    named = [e for e in read_events(run) if e["event"] == "straggler"]
    assert named and {(e["detail"]["rank"], e["detail"]["host"]) for e in named} == {(3, node)}
    starts = [e["detail"] for e in read_events(run) if e["event"] == "attempt_start"]
    assert node in starts[0]["nodes"]
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    second = wait_for(
        lambda: [e["detail"] for e in read_events(run) if e["event"] == "attempt_start"][1:],
        150,
        "the requeued attempt",
    )[0]
    subprocess.run(["scancel", job], check=True)  # the drill slows the new rank 3 too: stop here
    wait_gone(job, 60)
    assert node not in second["nodes"] and len(second["nodes"]) == 2, second
    excluded = [e["detail"]["nodes"] for e in read_events(run) if e["event"] == "excluded_nodes"]
    assert excluded == [[node]]
