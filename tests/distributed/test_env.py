"""The launcher environment → process group helper (pure parts; real groups: tests/train/test_fault_*)."""

from __future__ import annotations

import pytest

from olmo.distributed.env import fill_env_from_slurm, first_host, group_backend, slurm_port


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [("nid001234", "nid001234"), ("nid[001234-001240,001300]", "nid001234"), ("n[3,1]", "n3")],
)
def test_first_host(nodelist: str, host: str):
    assert first_host(nodelist) == host


def test_srun_environment_becomes_torch_environment():
    env = {
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NTASKS": "8",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "4(x2)",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_JOB_ID": "4242",
    }
    out = fill_env_from_slurm(dict(env))
    assert (out["RANK"], out["LOCAL_RANK"], out["WORLD_SIZE"]) == ("5", "1", "8")
    assert out["LOCAL_WORLD_SIZE"] == "4" and out["MASTER_ADDR"] == "gpu07"
    assert out["MASTER_PORT"] == str(slurm_port("4242")) and 20000 <= slurm_port("4242") < 40000


def test_torchrun_environment_wins_and_single_task_is_untouched():
    torchrun = {"RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    assert fill_env_from_slurm(dict(torchrun)) == torchrun
    single = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    assert fill_env_from_slurm(dict(single)) == single


def test_nccl_group_keeps_a_gloo_side_for_cpu_tensors():
    # The loop's stop flags, eval sums and energy totals are CPU tensors; NCCL alone can't reduce them.
    assert group_backend("nccl") == "cpu:gloo,cuda:nccl"
    assert group_backend("gloo") == "gloo"
