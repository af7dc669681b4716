"""`olmo launch`: submit training through submitit, one task per device, requeue-aware.

Restart policy under submitit: SLURM requeues after a node failure (--requeue); the trainer
checkpoints at the step boundary on SIGTERM/USR2/walltime and returns 75, and then global rank 0
alone requeues the job (after checking the restart limit) while every rank exits without a result,
so the client keeps waiting for the attempt that finishes. Each attempt resumes from the newest
committed checkpoint in the run dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from olmo.errors import OlmoError
from olmo.launch.command import (
    container_prefix,
    doctor_args,
    shell_join,
    shell_word,
    task_env,
    train_overrides,
)
from olmo.launch.profile import Profile
from olmo.launch.restart import log_nodes, note_attempt_nodes, requeue_job
from olmo.launch.sbatch import JobSpec
from olmo.slurm import REQUEUE_EXIT_CODE, restart_limit_message, walltime_minutes


def device_env(kind: str, local_rank: int) -> dict[str, str]:
    """Visible devices of one task: its own device only (AMD needs ROCR_, submitit sets CUDA_)."""
    if kind == "rocm":
        return {"ROCR_VISIBLE_DEVICES": str(local_rank)}
    if kind == "cuda":
        return {"CUDA_VISIBLE_DEVICES": str(local_rank)}
    return {}


class TrainTask:
    """The pickled callable each task runs; checkpointable (resumes from the run dir)."""

    def __init__(self, prof: Profile, job: JobSpec):
        self.prof, self.job = prof, job

    def __call__(self) -> dict[str, Any]:
        import submitit

        env = submitit.JobEnvironment()
        if self.prof.devices.kind != "cpu" and not self.prof.slurm.gpu_bind:
            # submitit exports CUDA_VISIBLE_DEVICES only; each task gets its own device.
            for k in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
                os.environ.pop(k, None)
            os.environ.update(device_env(self.prof.devices.kind, env.local_rank))
        self.failed_nodes = (
            note_attempt_nodes(Path(self.job.run_dir)) if env.global_rank == 0 else []
        )
        if self.prof.doctor.enabled:
            self._doctor(env)
        from olmo.train.watchdog import supervise_train

        # With train.watchdog_timeout_s, this task supervises `olmo train` as its child.
        argv = ["train", self.job.config, "--run-dir", self.job.run_dir, *self.train_overrides()]
        rc = supervise_train(argv)
        if rc is None:
            from olmo.config.schema import load_config
            from olmo.run import run_training

            cfg = load_config(self.job.config, self.train_overrides())
            rc = run_training(cfg, Path(self.job.run_dir))
        if rc == REQUEUE_EXIT_CODE:
            self._requeue(env)
        if rc != 0:
            raise RuntimeError(f"olmo train exited with {rc}")
        node = os.environ.get("SLURMD_NODENAME", env.hostname)
        return {"exit_code": rc, "rank": env.global_rank, "node": node}

    def _doctor(self, env: Any) -> None:
        """`olmo doctor` as its own process per task, as in the sbatch path (the collective
        library's state, e.g. NCCL_NET/NCCL_DEBUG, must not leak into training)."""
        cmd = [sys.executable, "-m", "olmo", "doctor", *doctor_args(self.prof)]
        cmd += ["--run-dir", self.job.run_dir]
        if subprocess.run(cmd).returncode != 0:
            raise OlmoError(f"pre-flight check failed (node {env.hostname}: see the log)")

    def train_overrides(self) -> list[str]:
        return train_overrides(self.prof, self.job)

    def _requeue(self, env: Any) -> None:
        """Rank 0 requeues (unless the restart limit is reached); every rank leaves no result."""
        if env.global_rank == 0:
            msg = restart_limit_message(REQUEUE_EXIT_CODE)
            if msg:
                raise OlmoError(msg)
            # Fails harmlessly when SLURM is already requeueing us (scontrol requeue, node loss).
            rc = requeue_job(env.job_id, self.failed_nodes)
            if self.failed_nodes:
                log_nodes(Path(self.job.run_dir), "excluded_nodes", self.failed_nodes)
            excl = f" excluding {','.join(self.failed_nodes)}" if self.failed_nodes else ""
            print(f"olmo: requeue job {env.job_id}{excl}: rc {rc}", file=sys.stderr, flush=True)
        raise SystemExit(-1)  # not an Exception: submitit writes no result for this attempt

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's preemption hook (a signal before training started): resubmit as is."""
        import submitit

        return submitit.helpers.DelayedSubmission(TrainTask(self.prof, self.job))


def executor_params(prof: Profile) -> dict[str, Any]:
    s = prof.slurm
    srun_args = [f"--wait={s.task_exit_wait_s}", f"--cpus-per-task={s.cpus_per_task}"]
    if s.distribution:
        srun_args.append(f"--distribution={s.distribution}")
    if s.cpu_bind:
        srun_args.append(f"--cpu-bind={s.cpu_bind}")
    if s.gpu_bind:
        srun_args.append(f"--gpu-bind={s.gpu_bind}")
    extra: dict[str, Any] = {"requeue": True}
    for opt in s.extra:
        key, _, val = opt.removeprefix("--").partition("=")
        extra[key.replace("-", "_")] = val or True
    if s.account:
        extra["account"] = s.account
    if s.time_min:
        extra["time_min"] = s.time_min
    params: dict[str, Any] = {
        "nodes": s.nodes,
        "tasks_per_node": prof.devices.per_node,
        "cpus_per_task": s.cpus_per_task,
        "timeout_min": walltime_minutes(s.time),
        "slurm_signal_delay_s": s.signal_margin_s,
        "slurm_srun_args": srun_args,
        "slurm_additional_parameters": extra,
        # Exported in the batch script so they reach srun and the container runtime
        # (SINGULARITYENV_*) as well as every task.
        "slurm_setup": [
            *prof.setup,
            *(f"export {k}={shell_word(v)}" for k, v in task_env(prof).items()),
        ],
    }
    if s.partition:
        params["slurm_partition"] = s.partition
    if s.gpus_per_node:
        params["gpus_per_node"] = s.gpus_per_node
    if s.mem is not None:
        params["slurm_mem"] = s.mem
    return params


def executor_python(prof: Profile) -> str | None:
    """The python command of the tasks: the container's (an argument of the executor's
    constructor: submitit's update_parameters rejects `python`)."""
    prefix = container_prefix(prof)
    return shell_join([*prefix, prof.python]) if prefix else None


def launch(prof: Profile, job: JobSpec, dry_run: bool = False, wait: bool = False) -> int:
    params = executor_params(prof)
    folder = Path(job.run_dir) / "slurm"
    if dry_run:
        task = TrainTask(prof, job)
        print(
            json.dumps(
                {
                    "folder": str(folder),
                    "executor": params,
                    "python": executor_python(prof),
                    "job_name": job.job_name,
                    "train": [
                        "olmo",
                        "train",
                        job.config,
                        "--run-dir",
                        job.run_dir,
                        *task.train_overrides(),
                    ],
                    "env": prof.env,
                    "task_devices": {
                        str(r): device_env(prof.devices.kind, r)
                        for r in range(prof.devices.per_node)
                    },
                },
                indent=1,
            )
        )
        return 0
    import submitit

    if prof.name == "local" and not os.environ.get("SLURM_CONF"):
        from olmo.launch.localcluster import local_slurm_conf

        conf = local_slurm_conf()
        if conf is None:
            raise OlmoError("--cluster local: no local cluster found; run `olmo cluster up` first")
        os.environ["SLURM_CONF"] = str(conf)
    python = executor_python(prof)
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm", **_python_kwarg(python))
    ex.update_parameters(name=job.job_name, **params)
    j = ex.submit(TrainTask(prof, job))
    print(f"submitted job {j.job_id}")
    print(f"logs: {j.paths.stdout} {j.paths.stderr} (task 0; other tasks beside them)")
    print(f"run dir: {job.run_dir}")
    if wait:
        wait_finished(j, params["nodes"] * params["tasks_per_node"])
        print(json.dumps(j.results()))
    return 0


def _python_kwarg(python: str | None) -> dict[str, str]:
    return {"slurm_python": python} if python else {}


def wait_finished(job: Any, ntasks: int, poll_s: float = 2.0) -> None:
    """Until every task left a result or the job left the queue for good. submitit alone may
    call a job finished during the ~1.5 s sacct shows NODE_FAIL before SLURM requeues it."""
    import time

    pickles = [job.paths.folder / f"{job.job_id}_{t}_result.pkl" for t in range(ntasks)]
    while not all(p.exists() for p in pickles):
        out = subprocess.run(["squeue", "-h", "-j", job.job_id], capture_output=True, text=True)
        if out.returncode == 0 and not out.stdout.strip():
            time.sleep(poll_s)  # let the last result land, then let submitit report
            break
        time.sleep(poll_s)
