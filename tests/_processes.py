"""Background servers a test starts (moto, the storage emulators, Label Studio): a free port,
wait until one answers, stop it by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_it_answers(url: str, proc: subprocess.Popen, what: str, *, timeout: float = 60) -> None:
    """Poll ``url`` until it answers (any HTTP status); fail the test, stopping the process, if
    it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:  # an error status is still an answer
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                pytest.fail(f"{what} did not start (exit {proc.poll()})")
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen, *, timeout: float = 20) -> None:
    """SIGTERM by PID, SIGKILL if it has not gone after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
