"""`bench.api_ingest --api-processes N`: what can be checked without starting a server (the
servers themselves: tests/e2e/test_bench_api_processes.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import api_ingest
from bench.common import CpuMeter, GuanaiServer, ManagedProcess, guanai_server

# Busy for 0.2 s of CPU, then says so and waits to be killed (a process that ended is gone from /proc).
BUSY = (
    "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass\n"
    "print('done', flush=True)\ntime.sleep(60)\n"
)


def test_a_meter_counts_several_process_groups_under_one_name() -> None:
    children = [
        subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        pids = [c.pid for c in children]
        with CpuMeter({"first": pids[0], "second": pids[1], "both": pids}) as meter:
            for c in children:
                assert c.stdout is not None
                assert c.stdout.readline() == "done\n"
    finally:
        for c in children:
            c.kill()
            c.communicate()
    assert meter.used["first"] > 0
    assert meter.used["second"] > 0
    assert meter.used["both"] == pytest.approx(meter.used["first"] + meter.used["second"])


def test_a_server_of_one_api_process_lists_it(tmp_path: Path) -> None:
    api = ManagedProcess("api", [sys.executable, "-c", "pass"], {}, tmp_path)
    api.proc.wait(10)
    server = GuanaiServer("http://127.0.0.1:1", "secret", api, api, None)
    assert server.apis == [api]
    assert server.base_urls == ["http://127.0.0.1:1"]
    assert server.api_pids == [api.pid]
    api.stop()


def test_several_api_processes_need_a_nats_server_and_at_least_one() -> None:
    # Refused before anything is started or migrated (the URL names no server).
    with pytest.raises(ValueError, match="NATS"), guanai_server("postgresql://nobody@127.0.0.1:1/x", api_processes=2):
        pass
    with (
        pytest.raises(ValueError, match="at least 1"),
        guanai_server("postgresql://nobody@127.0.0.1:1/x", api_processes=0),
    ):
        pass


def test_the_flag_takes_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        api_ingest.main(["--api-processes", "0"])
    assert exit_.value.code == 2
    assert "--api-processes" in capsys.readouterr().err
