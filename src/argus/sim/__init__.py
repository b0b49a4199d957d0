"""Discrete-event simulation of an Argus cluster: the production policy code on simulated GPUs.

trace (workloads) -> prompts (optimal levels) -> policies (production optimizer or a baseline)
-> engine (control ticks, routing) -> kernel (per-level batching queues) -> metrics / report.
"""
