"""
Echo cancellation on a real echo path, run by ``scripts/aec-check`` (not collected by
``scripts/test``: in about one run in thirty the device still cancels a reply it should
not have, and a test that fails that often would make the suite's verdict a coin toss).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pulse import pulse_server
from tests.test_real_audio import reply_echo_is_cancelled


@pytest.mark.parametrize("drift", [False, True], ids=["fixed-delay", "drifting-delay"])
async def test_with_echo_cancellation_the_reply_does_not_interrupt_itself(
    drift: bool, tmp_path: Path
) -> None:
    """
    The reply reaches the microphone through the echo path and still plays to its end;
    the user talking over it (at the same loudness as the echo) still barges in. The echo
    path has a fixed delay (one sound card), or TESTING.md's loopback as it is, whose
    delay wanders by a few samples (separate clocks).
    """
    with pulse_server(tmp_path / "pulse", echo_path=True, drift=drift) as pulse:
        await reply_echo_is_cancelled(pulse, tmp_path)
