"""`argus solve SNAPSHOT.json`: run the optimizer on one snapshot and print the decision as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from argus.policy.optimizer import solve
from argus.policy.profile import load_default_profile, load_profile
from argus.policy.snapshot import Snapshot, SnapshotError


def register(sub) -> None:
    """Add the `solve` subcommand."""
    p = sub.add_parser("solve", help="solve one optimizer snapshot (JSON) and print the decision as JSON")
    p.add_argument("snapshot", type=Path, help="snapshot JSON file, or - for stdin")
    p.add_argument("--profile", type=Path,
                   help="profile JSON for levels given by name (default: the bundled SDXL profile)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Load, validate, solve, print; domain errors propagate to cli.main (exit 2)."""
    text = sys.stdin.read() if str(args.snapshot) == "-" else args.snapshot.read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise SnapshotError(f"{args.snapshot}: not valid JSON: {e.msg} at line {e.lineno}") from None
    needs_profile = isinstance(raw, dict) and any(isinstance(x, str) for x in raw.get("levels") or [])
    profile = None
    if needs_profile:
        profile = load_profile(args.profile) if args.profile else load_default_profile()
    decision = solve(Snapshot.from_dict(raw, profile=profile))
    print(json.dumps(decision.to_dict(), indent=1))
    return 0
