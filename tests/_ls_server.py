"""Start a real Label Studio server for tests: its own cached venv, a free loopback port,
a fresh data dir, a known user and API token; stopped by PID.

The venv (``.venv-labelstudio`` at the repository root, gitignored) is created on first use
with ``pip install label-studio==1.23.2`` (about 2 minutes) and reused afterwards.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _processes import free_port

REPO = Path(__file__).resolve().parents[1]
LS_VERSION = "1.23.2"
LS_VENV = REPO / ".venv-labelstudio"


@dataclass
class LabelStudioServer:
    """A running server: where it answers, the token of its one user, and its process."""

    url: str
    token: str
    pid: int
    email: str
    password: str = field(repr=False)
    data_dir: Path
    document_root: Path
    log_path: Path
    proc: subprocess.Popen

    def stop(self, timeout: float = 20) -> None:
        """Stop the server (its whole process group) by PID."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def ensure_venv(venv: Path = LS_VENV) -> Path:
    """The ``label-studio`` executable of the cached venv, creating the venv if missing."""
    exe = venv / "bin" / "label-studio"
    done = venv / ".boxloop-ready"
    if done.exists():
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(tempfile.gettempdir()) / f"boxloop-{venv.name.lstrip('.')}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # two test processes must not build it at once
        if done.exists():
            return exe
        ok = exe.exists() and subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import label_studio; assert label_studio.__version__ == '{LS_VERSION}'"],
            capture_output=True,
        ).returncode == 0
        if not ok:  # missing or half-built (an interrupted install): build it again
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", f"label-studio=={LS_VERSION}"],
                check=True,
                timeout=1800,
            )
        done.write_text(LS_VERSION)
    return exe


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_server(*, data_dir: Path, document_root: Path, timeout: float = 300) -> LabelStudioServer:
    """Start Label Studio on a free 127.0.0.1 port and wait until it answers our token.

    Raises RuntimeError with the log tail when it does not come up."""
    exe = ensure_venv()
    port = free_port()
    if not _port_free(port):
        raise RuntimeError(f"port {port} is busy")
    token = secrets.token_hex(20)
    email, password = "ci@example.com", secrets.token_hex(12)
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(
        {
            "PATH": f"{exe.parent}:{env.get('PATH', '/usr/bin:/bin')}",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": email,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        }
    )
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir,
            start_new_session=True,  # its own process group, so stop() ends its children too
        )
    server = LabelStudioServer(
        url=f"http://127.0.0.1:{port}",
        token=token,
        pid=proc.pid,
        email=email,
        password=password,
        data_dir=data_dir,
        document_root=document_root,
        log_path=log_path,
        proc=proc,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {proc.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Label Studio not up after {timeout:.0f} s:\n{server.log_tail()}")
            try:
                status, body = _get(f"{server.url}/health", timeout=3)
                if status == 200 and b"UP" in body:
                    # the random token proves the answering server is the one we started
                    status, _ = _get(f"{server.url}/api/current-user/whoami", token)
                    if status == 200:
                        return server
                    raise RuntimeError(f"{server.url} answers but refuses our token ({status})")
            except (TimeoutError, urllib.error.URLError, ConnectionError):
                pass
            time.sleep(1)
    except BaseException:
        server.stop()
        raise
