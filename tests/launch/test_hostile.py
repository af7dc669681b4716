"""Hostile values through both launchers: rendered, then run under bash with stub SLURM commands.

A value with `$(...)`, backticks or quotes is a legal file name or string: it must reach the
trainer literally and run nothing; a newline or NUL (which would break out of a script line) and
command substitution where a profile allows `$VAR` are refused with one line (exit 2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from olmo.cli import main
from olmo.launch.profile import repo_root

CONFIG = repo_root() / "configs" / "tiny.yaml"
STUB = r"""#!/bin/bash
# Stub $0: record the arguments, run nothing.
printf '%s\0' "$(basename "$0")" "$@" >>"$STUB_LOG"
printf '\n' >>"$STUB_LOG"
case "$(basename "$0")" in
  sbatch) cp "${@: -1}" "$STUB_DIR/captured.sbatch"; echo "Submitted batch job 4242" ;;
esac
"""
HOSTILE = ["$(touch PWNED)", "`touch PWNED`", '"; touch PWNED; "', "'$(touch PWNED)'", "$HOME"]


@pytest.fixture
def stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """srun, sbatch, scontrol, sinfo, squeue, sacct that only record; cwd = tmp_path."""
    d = tmp_path / "stubs"
    d.mkdir()
    for name in ("srun", "sbatch", "scontrol", "sinfo", "squeue", "sacct"):
        (d / name).write_text(STUB)
        (d / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{d}:{os.environ['PATH']}")
    monkeypatch.setenv("STUB_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("STUB_DIR", str(d))
    monkeypatch.setenv("SLURM_CONF", "/nonexistent/slurm.conf")  # `--cluster local` needs one
    monkeypatch.chdir(tmp_path)
    return tmp_path


def calls(tmp: Path) -> list[list[str]]:
    text = (tmp / "calls.log").read_text() if (tmp / "calls.log").exists() else ""
    return [line.strip("\0").split("\0") for line in text.split("\0\n") if line.strip("\0\n")]


def run_script(script: Path, tmp: Path) -> None:
    env = {**os.environ, "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "n1", "SLURM_NNODES": "1"}
    env.update(SLURM_CPUS_PER_TASK="1", SLURM_NTASKS="1")
    proc = subprocess.run(["bash", str(script)], env=env, cwd=tmp, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pwned = [p for p in tmp.rglob("PWNED*")]
    assert not pwned, f"a value ran as a command: {pwned}"


def hostile_config(tmp: Path, name: str) -> Path:
    d = tmp / f"cfg{name}"
    d.mkdir()
    shutil.copy(CONFIG, d / "tiny.yaml")
    return d / "tiny.yaml"


@pytest.mark.parametrize("value", HOSTILE)
def test_sbatch_takes_hostile_values_literally(stubs: Path, value: str):
    cfg = hostile_config(stubs, value)
    run_dir = f"runs/{value}"
    override = f"--wandb.project={value}"
    script = stubs / "job.sbatch"
    args = ["sbatch", "--cluster", "local", "--job-name", f"j{value}", "--run-dir", run_dir]
    assert main([*args, "-o", str(script), str(cfg), override]) == 0
    run_script(script, stubs)
    train = [c for c in calls(stubs) if c[0] == "srun" and "train" in c]
    assert len(train) == 1, calls(stubs)
    argv = train[0]
    assert argv[argv.index("train") + 1] == str(cfg)
    assert argv[argv.index("--run-dir") + 1] == run_dir
    assert argv[-1] == override
    assert (stubs / run_dir).is_dir()


@pytest.mark.parametrize("value", HOSTILE)
def test_launch_takes_hostile_values_literally(stubs: Path, value: str, capsys):
    run_dir = f"runs/{value}"
    args = ["launch", "--cluster", "local", "--job-name", f"j{value}", "--run-dir", run_dir]
    assert main([*args, str(CONFIG), f"--wandb.project={value}"]) == 0
    assert "submitted job 4242" in capsys.readouterr().out
    run_script(stubs / "stubs" / "captured.sbatch", stubs)
    srun = [c for c in calls(stubs) if c[0] == "srun"]
    assert srun and srun[-1][-1] == str(stubs / run_dir / "slurm")


NL = "a\nb"
REFUSED = [
    (["--run-dir", NL], "contains a control character"),
    (["--job-name", NL], "contains a control character"),
    (["--run-dir", "a\rb"], "contains a control character"),
    (["--train.max_steps=3\n#SBATCH --x"], "contains a control character"),
    (["--set", "env.X=$(touch PWNED)"], "only $VAR or ${VAR} may be expanded"),
    (["--set", "env.X=`touch PWNED`"], "only $VAR or ${VAR} may be expanded"),
    (["--set", 'container.binds=["/a", "$(id)"]'], "container.binds"),
    (["--set", "env={'A;touch PWNED': x}"], "is not a valid variable name"),
    (["--set", 'slurm.partition="a\\nb"'], "slurm.partition"),
    (["--time", "abc"], "slurm.time 'abc' is not a SLURM time"),
    (["--time", "0"], "must be longer than zero"),
    (["--train.max_stepz=3"], "unknown key 'train.max_stepz'"),
    (["--train.max_steps=abc"], "train.max_steps"),
    (["--train.max_steps=0"], "train.max_steps must be positive"),
]


@pytest.mark.parametrize("launcher", ["sbatch", "launch"])
@pytest.mark.parametrize(("extra", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_refused_with_one_line(stubs: Path, launcher: str, extra: list[str], message, capsys):
    code = main([launcher, "--cluster", "local", str(CONFIG), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not calls(stubs) and not list(stubs.rglob("PWNED*"))


def test_missing_config_is_refused_before_submission(stubs: Path, capsys):
    assert main(["sbatch", "--cluster", "local", "nosuch.yaml", "--submit"]) == 2
    assert "nosuch.yaml: no such config file" in capsys.readouterr().err
    assert not calls(stubs)


def test_profile_values_expand_only_variables(stubs: Path):
    """`$VAR` in profile env values and binds expands on the node; the rendering is the same
    script that runs."""
    script = stubs / "job.sbatch"
    sets = ["--set", "env.MY_DIR=$HOME/x", "--set", "env.PLAIN=a b"]
    assert main(["sbatch", "--cluster", "local", *sets, "-o", str(script), str(CONFIG)]) == 0
    text = script.read_text()
    assert 'export MY_DIR="$HOME/x"' in text and "export PLAIN='a b'" in text
    json.dumps(text)  # plain text, no NUL
