"""Operator tests import the process harness (op_harness.py) next to them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
