"""The optimizer's solver internals (argus.policy.optimizer is the one entry point): the MILP formulation
(`milp`), LP-based branch and bound (`bnb`), the exact evaluator of a fixed allocation (`fixed`), the
covering search and dynamic program that find a safe allocation (`cover`, `safe_dp`) and allocation
enumeration helpers (`allocations`)."""
