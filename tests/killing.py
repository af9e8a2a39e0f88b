"""SIGKILL a subprocess once it has reached a chosen point: the child writes a marker file there and stalls (see
tests/loops/stall.py and tests/test_resume.py's StallAt), the test waits for the marker and kills it, as a crash or
`kill -9` would. Used by the resume tests of `lit-align fit` and of the loops."""
import os
import signal
import subprocess
import time
from pathlib import Path


def kill_when_marked(process: subprocess.Popen, marker: Path, log: Path, timeout: float = 300) -> None:
    """Wait until `marker` exists (or the process ends, or `timeout` passes), then SIGKILL the process; fail with the
    end of its `log` if it never got there."""
    deadline = time.monotonic() + timeout
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert marker.exists(), f"the run never reached its stall point:\n{log.read_text()[-4000:]}"
    assert process.returncode == -signal.SIGKILL
