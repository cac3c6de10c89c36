"""
The soak (tests/support/soak.py): N turns (default 1,000) against the simulator as fast as
they go; prints RSS, open file descriptors and asyncio tasks after a warm-up and at the
end. Run through `scripts/soak [TURNS]`; tests/test_soak.py runs a short one.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tests.support.soak import soak


def main() -> None:
    turns = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        first, last = asyncio.run(soak(turns, Path(tmp)))
    took = time.monotonic() - started
    print(f"{last.turns - first.turns} turns in {took:.0f} s (after {first.turns} warm-up turns)")
    print(f"{'':<12} {'after warm-up':>14} {'at the end':>11} {'growth':>8}")
    print(
        f"{'RSS':<12} {first.rss_kb / 1024:>11.1f} MB {last.rss_kb / 1024:>8.1f} MB"
        f" {(last.rss_kb - first.rss_kb) / 1024:>+6.2f} MB"
    )
    print(f"{'open fds':<12} {first.fds:>14} {last.fds:>11} {last.fds - first.fds:>+8}")
    print(f"{'tasks':<12} {first.tasks:>14} {last.tasks:>11} {last.tasks - first.tasks:>+8}")


if __name__ == "__main__":
    main()
