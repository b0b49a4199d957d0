"""Pure decision logic: optimizer, redirection, demand smoothing, hysteresis, policy document.

Nothing under argus.policy does I/O or reads a clock; `now` is always an argument.

- profile.py: LevelProfile / Profile and their loader (the bundled SDXL profile: data/profiles).
- snapshot.py: Snapshot, the optimizer's validated input (SnapshotError names the field).
- optimizer.py: solve(snapshot) -> Decision (allocation MILP, overload, hysteresis, reason).
- milp.py / bnb.py: the safe and overload models and their branch and bound over HiGHS LPs.
- redirection.py: which level may serve whose load (safe / degraded / never) and P(k -> k').
- decision.py: Decision and to_policy_document; document.py: the PolicyDocument the router reads.
- demand.py: EWMA x headroom demand and h_k smoothing, state returned to the caller.
- synthetic.py: random profiles and snapshots for tests, benchmarks and the simulator.
"""
