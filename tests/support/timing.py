"""The unit every test timeout is written in."""

from __future__ import annotations

import os

MS = 0.001 * float(os.environ.get("COZE_EDGE_TEST_SLOWDOWN", "1"))
"""A millisecond, scaled up on slow machines (a Pi) through $COZE_EDGE_TEST_SLOWDOWN."""
