"""`argus status`: allocation, readiness, rates and quality of the running local system."""

from __future__ import annotations

import json
from pathlib import Path

from argus.local.runtime import read_state


def register(sub) -> None:
    """Add the `status` subcommand."""
    p = sub.add_parser("status", help="show the running local system's allocation, rates and quality")
    p.add_argument("--workdir", type=Path, default=Path("run"))
    p.add_argument("--json", action="store_true", help="print the raw state")
    p.set_defaults(func=run)


def run(args) -> int:
    """Print the state written by `argus up`."""
    st = read_state(args.workdir)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    s = st.get("status") or {}
    print(f"service {st['service']}  url {st['url']}  prometheus {st.get('prometheus')}  mode {s.get('mode')}")
    alloc, ready = s.get("allocation") or {}, s.get("ready") or {}
    for lv in sorted(set(alloc) | set(ready)):
        print(f"  {lv:12s} wanted {alloc.get(lv, 0):2d}  ready {ready.get(lv, 0):2d}")
    obs = s.get("observed") or {}
    print("  observed: " + ", ".join(f"{k}={v}" for k, v in obs.items()))
    cond = s.get("conditions") or {}
    why = f" ({cond['ReadyReason']})" if cond.get("ReadyReason") else ""
    print(f"  Ready={cond.get('Ready')}{why}  Degraded={cond.get('Degraded')} {cond.get('DegradedReason') or ''}"
          + ("  Progressing (a replica is loading: the loop waits for it)" if cond.get("Progressing") else ""))
    print(f"  policy v{s.get('policyVersion')}: {s.get('reason', '')[:200]}")
    procs = st.get("processes") or {}
    if procs:
        print("  processes:")
    for name, p in procs.items():
        extra = [f"pid {p['pid']}"] if p.get("pid") else []
        if p.get("loaded") and p.get("level") != p["loaded"]:
            extra.append(f"serves {p['level']} (switched in place from the {p['loaded']} it loaded)")
        if p.get("uptime_s") is not None:
            extra.append(f"up {p['uptime_s']:.0f}s")
        if p.get("lastExit"):
            extra.append(f"last exit: {p['lastExit']}")
        if p.get("lastPeriodAgo_s") is not None:
            extra.append(f"last period {p['lastPeriodAgo_s']:.0f}s ago")
        print(f"    {name:24s} {p.get('state', '?'):9s} restarts {p.get('restarts', 0):<3d} {'  '.join(extra)}")
    lq = s.get("levelQuality") or {}
    if lq:
        print("  level quality planned with: " + ", ".join(f"{k} {v:g}%" for k, v in lq.items()))
    for a in s.get("profileAssumptions") or []:
        print(f"  assumption: {a}")
    for e in (s.get("events") or [])[-5:]:
        print(f"  event: {e}")
    return 0
