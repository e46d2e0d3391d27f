"""benchmarks/stage_timer: the probe wraps the stages it names in the server it is loaded into."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import asyncio
import sitecustomize
from healthflow.storage.group_commit import GroupCommit

async def write_batch(items):
    await asyncio.sleep(0.1)  # slower than the probe's 50 ms: listed as slow too
    return items

async def main():
    group = GroupCommit("probe.store", write_batch=write_batch, write_one=write_batch)
    await asyncio.gather(group.submit(1), group.submit(2))

asyncio.run(main())
sitecustomize._dump()
"""


def run_under_the_timer(role: str, out: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'benchmarks' / 'stage_timer'}{os.pathsep}{ROOT / 'src'}",
        "HEALTHFLOW_ROLE": role,
        "HEALTHFLOW_STAGE_TIMER": str(out),
    }
    subprocess.run([sys.executable, "-c", PROGRAM], env=env, check=True, timeout=60)


def test_the_stage_timer_times_what_a_role_all_server_runs(tmp_path: Path) -> None:
    out = tmp_path / "stages.txt"

    run_under_the_timer("all", out)

    lines = {line.split(" n=")[0].strip(): line for line in out.read_text().splitlines()}
    assert " n=      1 " in lines["GroupCommit._commit[probe.store]"]  # the two, in one batch
    assert "loop: callback from a thread runs after" in lines
    assert "GroupCommit._commit[probe.store]" in Path(f"{out}.slow").read_text()


def test_the_stage_timer_leaves_other_processes_alone(tmp_path: Path) -> None:
    out = tmp_path / "stages.txt"

    run_under_the_timer("worker", out)  # the bench's own process, or another role

    assert not out.exists()
