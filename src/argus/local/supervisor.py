"""Child-process supervision, like a kubelet: start with logs, restart what exits (exponential backoff),
stop cleanly, leave no orphans.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10000


def _ephemeral_low() -> int:
    """The lowest port the kernel gives an outgoing connection (Linux's default is 32768)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortPool:
    """Listening ports for the children, as a kubelet's hostPort bookkeeping: each a port no one listens on
    now, below the kernel's ephemeral range, and never one this pool handed out before.

    A port the kernel picks (bind to 0) is an ephemeral one: between the check and the child's own bind, an
    outgoing connection's source port could take it (CI saw a worker exit with "Socket '0.0.0.0:58189'
    already in use" while the router's clients were busy). Below that range only listeners compete, and
    the bind check sees them.
    """

    def __init__(self, host: str = "127.0.0.1", seed: int | None = None) -> None:
        self.host = host
        self.high = _ephemeral_low()
        self.given: set[int] = set()
        self.rng = random.Random(seed)

    def take(self) -> int:
        """A free port, not handed out before by this pool."""
        if self.high - _LOWEST_PORT < 1000:  # an odd kernel setting: the kernel's own choice, as before
            return self._kernel_port()
        for _ in range(200):
            port = self.rng.randrange(_LOWEST_PORT, self.high)
            if port not in self.given and _bindable(self.host, port):
                self.given.add(port)
                return port
        return self._kernel_port()

    def _kernel_port(self) -> int:
        with socket.socket() as s:
            s.bind((self.host, 0))
            port = s.getsockname()[1]
        self.given.add(port)
        return port


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on `host`, below the ephemeral range (PortPool)."""
    return PortPool(host).take()


@dataclass(frozen=True)
class Backoff:
    """When to restart a child that exited: `base_s` after an exit, doubling for each quick exit in a row
    up to `cap_s`; a run of `stable_s` or more starts the doubling over (a kubelet's CrashLoopBackOff)."""

    base_s: float = 0.5
    cap_s: float = 10.0
    stable_s: float = 30.0

    def streak(self, previous: int, ran_s: float) -> int:
        """Quick exits in a row, this one included: 1 after a stable run."""
        return 1 if ran_s >= self.stable_s else previous + 1

    def delay(self, streak: int) -> float:
        """Seconds to wait before the restart that follows the `streak`-th quick exit in a row."""
        return min(self.cap_s, self.base_s * 2 ** max(0, streak - 1))


def describe_exit(code: int | None) -> str:
    """A return code in words: 'code 3' or 'killed by SIGKILL'."""
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"code {code}"


@dataclass
class Child:
    """One supervised process (the latest run of it, when it is restarted)."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: Path | None = None
    restart: Backoff | None = None  # None: not restarted here (its owner replaces it, or nobody)
    ready_url: str | None = None  # answers 200 once the process serves (probed after each restart)
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    streak: int = 0  # quick exits in a row
    restart_at: float | None = None  # monotonic time of the pending restart (while backing off)
    last_exit: int | None = None
    ran_s: float | None = None  # how long the last run lasted
    ready_s: float | None = None  # seconds from (re)start to the first answer of its ready URL, latest run

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    @property
    def state(self) -> str:
        """running, starting (alive, not yet answering its ready URL), backoff (waiting to restart) or exited."""
        if self.alive():
            return "running" if self.ready or self.ready_url is None else "starting"
        return "backoff" if self.restart is not None else "exited"

    def info(self) -> dict:
        """What `argus status` shows of it."""
        return {"state": self.state, "restarts": self.restarts, "pid": self.popen.pid,
                "readyAfter_s": None if self.ready_s is None else round(self.ready_s, 2),
                "uptime_s": round(time.monotonic() - self.started, 1) if self.alive() else None,
                "lastExit": None if self.last_exit is None else describe_exit(self.last_exit)}


class Supervisor:
    """Starts named children in their own process groups; restarts those started with a `Backoff` when they
    exit (`supervise`, called periodically); stops them all, TERM then KILL.

    Every child is spawned from one long-lived thread: PR_SET_PDEATHSIG fires when the *thread* that
    forked the child exits, so a child started from a short-lived thread (a test's action, a control
    loop that is restarted) would otherwise be killed with it.
    """

    def __init__(self, log_dir: Path):
        """Logs go to `log_dir/<name>.log`."""
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, Child] = {}
        self._lock = threading.RLock()  # children: restarts (supervise) versus stops
        self._spawner: ThreadPoolExecutor | None = None

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None, cwd: Path | None) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})

        def popen():
            with open(log_path, "ab", buffering=0) as log:
                return subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)

        with self._lock:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(1, thread_name_prefix="argus-spawn")
            spawner = self._spawner
        return spawner.submit(popen).result()

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, *,
              restart: Backoff | None = None, ready_url: str | None = None, restarts: int = 0) -> Child:
        """Start `cmd` as child `name` (replacing a dead one of that name); with `restart`, `supervise`
        restarts it whenever it exits. `restarts`: the count it carries (a replacement of an earlier child)."""
        with self._lock:
            if name in self.children and self.children[name].alive():
                raise RuntimeError(f"{name} is already running")
            p = self._spawn(name, cmd, env, cwd)
            child = Child(name, p, self.log_dir / f"{name}.log", list(cmd), env, cwd, restart, ready_url, restarts)
            self.children[name] = child
            return child

    def supervise(self, now: float | None = None) -> list[str]:
        """Restart the children that exited once their backoff is over; probe restarted ones until they
        answer. One line per restart (what exited, how, after how long, which restart), nothing else."""
        events = []
        with self._lock:
            for c in list(self.children.values()):
                if c.restart is None or c.alive():
                    continue
                t = time.monotonic() if now is None else now
                if c.restart_at is None:  # just found dead
                    c.ran_s = t - c.started
                    c.last_exit = c.popen.returncode
                    c.ready = False
                    c.streak = c.restart.streak(c.streak, c.ran_s)
                    c.restart_at = t + c.restart.delay(c.streak)
                    _signal_group(c.popen, signal.SIGKILL)  # stragglers in its group
                if t >= c.restart_at:
                    waited = c.restart.delay(c.streak)
                    c.popen = self._spawn(c.name, c.cmd, c.env, c.cwd)
                    c.restarts += 1
                    c.started, c.restart_at, c.ready_s = time.monotonic(), None, None
                    events.append(f"{c.name} exited ({describe_exit(c.last_exit)}) after {c.ran_s:.1f} s: "
                                  f"restarted after {waited:g} s (restart {c.restarts})")
            probe = [c for c in self.children.values() if c.ready_url and not c.ready and c.alive()]
        for c in probe:
            c.ready = _answers(c.ready_url)
            if c.ready:
                c.ready_s = time.monotonic() - c.started
        return events

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """Stop one child and its process group (it is not restarted): SIGTERM, then SIGKILL after `timeout`."""
        with self._lock:
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
        with self._lock:
            spawner, self._spawner = self._spawner, None
        if spawner is not None:
            spawner.shutdown(wait=False)

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


def _answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def wait_http(url: str, timeout: float, child: Child | None = None, ok=(200,)) -> None:
    """Wait until GET `url` answers with an `ok` status; fail early if `child` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited with code {child.popen.returncode}; see {child.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status in ok:
                    if child is not None:
                        child.ready, child.ready_s = True, time.monotonic() - child.started
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s")
