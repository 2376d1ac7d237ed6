"""The tiny project on a real SLURM cluster: `snakemake --profile profiles/slurm` (the
snakemake-executor-plugin-slurm) against a one-node cluster on loopback that
tests/slurm/start_cluster.sh starts (MariaDB + slurmdbd for accounting, munged, slurmctld,
slurmd). Every job but the local `all` must have gone through sbatch and be COMPLETED in
sacct, with the resources the rules declare, and the results must equal a local run's.

Needs root (it installs the Debian packages slurmctld, slurmd, slurm-client, slurmdbd, munge
and mariadb-server on first use, then runs the daemons); skipped where they cannot be
installed. The cluster is stopped at the end only if this module started it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny_project import REPO, make_project

from helixflow.resources import request

pytestmark = pytest.mark.slurm
SCRIPTS = REPO / "tests" / "slurm"
RUN_LIMIT = 900  # seconds; a hung Snakemake ignores SIGTERM, hence `timeout -k`
# The test cluster's one GPU is a fake (tests/slurm/start_cluster.sh): train on the CPU, so
# that no rule asks for a GPU; test_an_invisible_gpu_stops_the_job asks for it.
CPU_TRAINING = ["--config", "device=cpu"]
# The plugin polls sacct `init-seconds-before-status-checks` (default 40 s) after each
# finished job, plus 10 s per poll without one; the tiny jobs take seconds.
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "2"]
COMPARED = ["results/metrics/summary.tsv", "results/motifs/summary.tsv",
            "results/metrics/sweep.tsv", "results/models/Reb1/cnn/model.safetensors",
            "results/models/Reb1/cnn/test_predictions.tsv"]


def _env(slurm_conf: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}")
    if slurm_conf:
        env["SLURM_CONF"] = slurm_conf
    return env


@pytest.fixture(scope="module")
def cluster():
    """Start the cluster (idempotent); yields the environment for SLURM commands."""
    start = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPTS / "start_cluster.sh")], capture_output=True,
                            text=True, timeout=1800)
    if result.returncode == 3:
        pytest.skip((result.stderr.strip().splitlines() or ["start_cluster.sh: exit 3"])[-1])
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    started = lines.get("STARTED", "").split()
    if result.returncode != 0:
        if started:
            subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh"), *started], timeout=300)
        pytest.fail(f"start_cluster.sh failed:\n{result.stderr[-4000:]}")
    print(f"\ncluster ready in {time.monotonic() - start:.1f}s, started: {started or 'none'}")
    yield _env(lines["SLURM_CONF"])
    if started:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh"), *started], timeout=300,
                       check=True)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The tiny project run with the SLURM profile; returns (workdir, log, sacct start)."""
    root = tmp_path_factory.mktemp("tiny_slurm")
    make_project(root)
    since = (datetime.now() - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    cmd = ["timeout", "-k", "10", str(RUN_LIMIT), sys.executable, "-m", "snakemake",
           "--profile", str(REPO / "profiles" / "slurm"), "-s", str(REPO / "Snakefile"),
           "-d", str(root), "--configfile", str(root / "config.yaml"), *CPU_TRAINING, *FAST_POLL]
    start = time.monotonic()
    result = subprocess.run(cmd, cwd=root, env=cluster, capture_output=True, text=True,
                            timeout=RUN_LIMIT + 60)
    log = result.stdout + result.stderr
    (root / "snakemake_slurm.log").write_text(log)
    print(f"\nworkflow under SLURM: {time.monotonic() - start:.1f}s")
    assert result.returncode not in (124, 137), f"timed out after {RUN_LIMIT}s:\n{log[-5000:]}"
    assert result.returncode == 0, log[-5000:]
    return root, log, since


def _job_stats(log: str) -> Counter:
    """{rule: count} from the first 'Job stats:' table of a Snakemake log."""
    block = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return Counter({m.group(1): int(m.group(2)) for m in
                    re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if m.group(1) != "total"})


def _sacct(env: dict[str, str], run_id: str, since: str) -> list[dict[str, str]]:
    fields = ["JobID", "State", "ExitCode", "Comment", "ReqMem", "Timelimit", "AllocCPUS",
              "AllocTRES"]
    out = subprocess.run(["sacct", "-X", "-n", "-P", "--name", run_id, "--starttime", since,
                          "-o", ",".join(fields)], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]


def _rule(comment: str) -> str:
    """The plugin's sbatch --comment is rule_<name> or rule_<name>_wildcards_<values>."""
    return comment.removeprefix("rule_").split("_wildcards_", 1)[0]


def test_every_job_went_through_sbatch(slurm_run, cluster):
    root, log, since = slurm_run
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    local_rules = set(re.findall(r"^localrule (\w+):", log, re.M))
    assert "all" in local_rules, local_rules  # a target-only rule runs in Snakemake itself
    expected = Counter({rule: n for rule, n in _job_stats(log).items()
                        if rule not in local_rules})
    assert sum(expected.values()) >= 20 and expected["train_cnn"] == 1, expected
    for _ in range(60):  # slurmdbd records asynchronously
        jobs = _sacct(cluster, run_id, since)
        if len(jobs) >= sum(expected.values()):
            break
        time.sleep(1)
    assert Counter(_rule(job["Comment"]) for job in jobs) == expected, jobs
    not_done = [job for job in jobs if (job["State"], job["ExitCode"]) != ("COMPLETED", "0:0")]
    assert not not_done, not_done
    by_rule = {_rule(job["Comment"]): job for job in jobs}
    # rule resources reach sbatch: mem_mb -> --mem, runtime -> -t, threads -> --cpus-per-task;
    # the requests follow the inputs (helixflow.resources), computed when the job is submitted
    shards = root / "results/data/tiny/shards/Reb1/manifest.json"
    for rule, inputs in (("train_cnn", SimpleNamespace(shards=str(shards))),
                         ("stage_input", SimpleNamespace())):
        mem, minutes = request(rule, inputs)
        assert by_rule[rule]["ReqMem"] == f"{mem}M", rule
        assert by_rule[rule]["Timelimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00", rule
    assert request("train_cnn", SimpleNamespace(shards=str(shards)))[0] > request("train_cnn")[0]
    assert {job["AllocCPUS"] for job in jobs} == {"1"}
    assert not [job for job in jobs if "gres/gpu" in job["AllocTRES"]], "device: cpu asks no GPU"


def test_outputs_match_a_local_run(slurm_run, tiny_run):
    """tiny_run (conftest): the same project run locally."""
    root = slurm_run[0]
    for name in COMPARED:
        ours, theirs = (hashlib.sha256((r / name).read_bytes()).hexdigest()
                        for r in (root, tiny_run))
        assert ours == theirs, f"{name} differs between the SLURM and the local run"
    assert _listing(root) == _listing(tiny_run)


def _listing(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / "results").rglob("*") if p.is_file())


def test_an_invisible_gpu_stops_the_job(slurm_run, cluster, tmp_path):
    """With ``device: auto`` train_cnn asks SLURM for a GPU (sbatch --gpus=1 through the
    plugin); SLURM grants the fake one and sets CUDA_VISIBLE_DEVICES, torch (the CPU build)
    sees none, and the job stops with the cause and the fix instead of training on the CPU."""
    root = tmp_path / "gpu"
    shutil.copytree(slurm_run[0], root, symlinks=True)
    since = (datetime.now() - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    cmd = ["timeout", "-k", "10", str(RUN_LIMIT), sys.executable, "-m", "snakemake",
           "--profile", str(REPO / "profiles" / "slurm"), "-s", str(REPO / "Snakefile"),
           "-d", str(root), "--configfile", str(root / "config.yaml"), "--config",
           "device=auto", "--retries", "0", "--forcerun", "train_cnn", *FAST_POLL,
           "results/models/Reb1/cnn/record.json"]
    result = subprocess.run(cmd, cwd=root, env=cluster, capture_output=True, text=True,
                            timeout=RUN_LIMIT + 60)
    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-3000:]
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    for _ in range(60):
        jobs = [job for job in _sacct(cluster, run_id, since) if _rule(job["Comment"])
                == "train_cnn"]
        if jobs and jobs[0]["State"] not in ("PENDING", "RUNNING"):
            break
        time.sleep(1)
    assert len(jobs) == 1 and "gres/gpu=1" in jobs[0]["AllocTRES"], jobs
    assert jobs[0]["State"] == "FAILED", jobs
    job_log = (root / "results/logs/train_cnn/Reb1.log").read_text()
    assert "this job was granted a GPU (CUDA_VISIBLE_DEVICES=0)" in job_log, job_log[-2000:]
    assert "install the CUDA build of torch" in job_log and "'device: cpu'" in job_log
    assert "Traceback" not in job_log, job_log[-2000:]
