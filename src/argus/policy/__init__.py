"""Pure decision logic: optimizer, redirection, demand smoothing, hysteresis, policy document.

Nothing under argus.policy does I/O or reads a clock; `now` is always an argument.
"""
