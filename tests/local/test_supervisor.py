"""The supervisor restarts what exits, like a kubelet (real processes, short backoffs).

Cases: the backoff doubles from its base to its cap and starts over after a stable run; a child
killed with SIGKILL is restarted (new pid, restart count 1, one log line naming the signal); a
child that keeps exiting is restarted with growing gaps, one line per restart; a child stopped on
purpose is not restarted; a child started from a thread that then ends keeps running (children
are forked from one long-lived thread, PR_SET_PDEATHSIG follows the forking thread); the control
loop's thread is restarted when it ends; the port pool hands out distinct free ports below the
kernel's ephemeral range and skips one a listener holds.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from argus.local.supervisor import Backoff, PortPool, Supervisor, describe_exit

FAST = Backoff(base_s=0.1, cap_s=0.4, stable_s=5.0)


def _drive(sup: Supervisor, until, timeout: float = 10.0) -> list[str]:
    """Call supervise() every 20 ms until `until()` holds; the events."""
    events, deadline = [], time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, events
        events += sup.supervise()
        time.sleep(0.02)
    return events


def test_backoff_doubles_to_its_cap_and_resets_after_a_stable_run():
    b = Backoff()  # 0.5 s doubling to 10 s, reset after 30 s of running
    streak, delays = 0, []
    for _ in range(7):
        streak = b.streak(streak, ran_s=1.0)
        delays.append(b.delay(streak))
    assert delays == [0.5, 1, 2, 4, 8, 10, 10]
    assert b.streak(streak, ran_s=30.0) == 1 and b.delay(1) == 0.5


def test_describe_exit():
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(3) == "code 3"


def test_killed_child_is_restarted_once_with_one_line(tmp_path):
    sup = Supervisor(tmp_path)
    try:
        c = sup.start("sleeper", ["sleep", "60"], restart=FAST)
        pid = c.popen.pid
        os.kill(pid, signal.SIGKILL)
        events = _drive(sup, lambda: c.restarts == 1 and c.alive())
        assert c.popen.pid != pid and c.state == "running"
        assert len(events) == 1 and "sleeper exited (killed by SIGKILL)" in events[0] and "restart 1" in events[0]
        assert sup.supervise() == []  # nothing more to say while it runs
        assert c.info()["restarts"] == 1 and c.info()["lastExit"] == "killed by SIGKILL"
    finally:
        sup.stop_all()


def test_crash_loop_backs_off_exponentially_one_line_per_restart(tmp_path):
    sup = Supervisor(tmp_path)
    try:
        c = sup.start("crasher", ["sh", "-c", "exit 3"], restart=FAST)
        starts = [time.monotonic()]

        def restarted_five_times():
            if c.restarts > len(starts) - 1:
                starts.append(time.monotonic())
            return c.restarts >= 5
        events = _drive(sup, restarted_five_times)
        assert len(events) == 5 and all("code 3" in e for e in events), events
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        # each gap: the backoff (0.1, 0.2, 0.4, 0.4, 0.4) plus the run (a shell's start) and polling
        for gap, want in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4]):
            assert want <= gap < want + 1.0, gaps
        assert gaps[2] > gaps[0] + 0.2, gaps  # it grew
    finally:
        sup.stop_all()


def test_stopped_child_is_not_restarted(tmp_path):
    sup = Supervisor(tmp_path)
    c = sup.start("sleeper", ["sleep", "60"], restart=FAST)
    sup.stop("sleeper")
    time.sleep(0.2)
    assert sup.supervise() == [] and "sleeper" not in sup.children and not c.alive()


def test_child_outlives_the_thread_that_started_it(tmp_path):
    sup = Supervisor(tmp_path)
    try:
        got = {}
        t = threading.Thread(target=lambda: got.setdefault("c", sup.start("sleeper", ["sleep", "60"])))
        t.start()
        t.join()
        time.sleep(0.5)  # PR_SET_PDEATHSIG would have sent SIGTERM by now
        assert got["c"].alive()
    finally:
        sup.stop_all()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_control_loop_thread_is_restarted(tmp_path):
    from argus.local.controller import LocalController
    from argus.tools.experiment import default_profile
    from argus.local.runtime import LocalSystem
    from argus.spec import parse_spec

    spec = parse_spec({"model": {"steps": 20, "height": 64, "width": 64}, "levels": ["cache-k0", "steps-5"],
                       "throughputTarget": 1, "gpus": 2, "latencySLO": 30, "qualityFloor": 90, "controlPeriod": 1})
    system = LocalSystem("svc", spec, tmp_path)
    calls = []

    class Ctl(LocalController):
        def period(self):
            calls.append(time.monotonic())
            if len(calls) == 1:
                raise SystemExit("boom")  # not an Exception: ends the thread
    ctl = Ctl(system, default_profile(spec), source=None)
    try:
        ctl.start()
        deadline = time.monotonic() + 15
        events = []
        while len(calls) < 2:
            assert time.monotonic() < deadline, (calls, events, ctl.info())
            events += system.supervise()
            time.sleep(0.05)
        assert len(events) == 1 and "control loop thread ended" in events[0] and "restart 1" in events[0]
        assert ctl.info()["state"] == "running" and ctl.info()["restarts"] == 1
        assert system.processes()["control"]["restarts"] == 1
    finally:
        ctl.stop()
        system.stop()


def test_port_pool_hands_out_distinct_free_ports_below_the_ephemeral_range():
    """An outgoing connection's source port comes from the ephemeral range; a port below it cannot be taken
    between the pool's check and the child's bind (CI: a worker's 'Socket 0.0.0.0:58189 already in use')."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    pool = PortPool(seed=7)
    ports = [pool.take() for _ in range(300)]
    assert len(set(ports)) == 300
    assert all(1024 <= p < low for p in ports)
    with socket.socket() as held:  # a listener on the port the next pool of the same seed would pick first
        first = PortPool(seed=11).take()
        held.bind(("127.0.0.1", first))
        held.listen()
        assert PortPool(seed=11).take() != first
