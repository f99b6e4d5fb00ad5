"""The benchmarks README and the docs quote: each script starts and explains itself (a refactor that moved
a class they import left bench/medical.py failing even its --help, found by an outside newcomer, checker 307)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

#: The scripts (bench/options.py and bench/spread.py are helpers they import).
SCRIPTS = sorted(path.name for path in (REPO / "bench").glob("*.py") if '__name__ == "__main__"' in path.read_text())


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_script_imports_and_answers_help(script):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr[-2000:]
