"""Re-export: the per-prompt plan is part of the pure core (argus.policy.prompt_plan); import it from there."""

from argus.policy.prompt_plan import FullQualityPlanner, Planner, PromptPlan, store_key

__all__ = ["FullQualityPlanner", "Planner", "PromptPlan", "store_key"]
