"""Child-process supervision: start with logs, stop cleanly, leave no orphans."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the supervisor dies (even SIGKILL), the
    # kernel sends the child SIGTERM, so no orphan outlives `argus up`.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on `host`."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Child:
    """One supervised process."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None


class Supervisor:
    """Starts named children in their own process groups; stops them all, TERM then KILL."""

    def __init__(self, log_dir: Path):
        """Logs go to `log_dir/<name>.log`."""
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, Child] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Child:
        """Start `cmd` as child `name` (replacing a dead one of that name)."""
        if name in self.children and self.children[name].alive():
            raise RuntimeError(f"{name} is already running")
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab", buffering=0)
        full_env = dict(os.environ)
        full_env.update(env or {})
        p = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        child = Child(name, p, log_path)
        self.children[name] = child
        return child

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """Stop one child and its process group: SIGTERM, then SIGKILL after `timeout`."""
        child = self.children.pop(name, None)
        if child is None:
            return
        _signal_group(child.popen, signal.SIGTERM)
        try:
            child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(child.popen, signal.SIGKILL)
            child.popen.wait(5)
        _signal_group(child.popen, signal.SIGKILL)  # stragglers in the group (e.g. Triton stubs)

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop every child, newest first (front doors before the workers behind them)."""
        for name in reversed(list(self.children)):
            self.stop(name, timeout)

    def dead(self) -> list[str]:
        """Names of children that have exited."""
        return [n for n, c in self.children.items() if not c.alive()]

    def tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a child's log (for error messages)."""
        path = self.log_dir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_http(url: str, timeout: float, child: Child | None = None, ok=(200,)) -> None:
    """Wait until GET `url` answers with an `ok` status; fail early if `child` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited with code {child.popen.returncode}; see {child.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status in ok:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s")
