"""Tests import bench modules (the fault campaign's targets, its cluster): importing one must not
change the environment every later application of the test run is built from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib, os, pkgutil
import bench
before = dict(os.environ)
names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__))
for name in names:
    importlib.import_module("bench." + name)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(len(names), ",".join(changed))
"""


def test_importing_a_bench_module_leaves_the_environment_as_it_was() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", CHECK], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    count, changed = out.stdout.strip().split(" ", 1) if " " in out.stdout.strip() else (out.stdout.strip(), "")
    assert int(count) >= 10, "the bench modules were found"
    assert changed == "", f"importing bench modules changed the environment: {changed}"
