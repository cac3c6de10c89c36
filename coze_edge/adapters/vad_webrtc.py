"""WebRTC's voice activity detector (``webrtcvad``) behind the endpointer's detector seam."""

from __future__ import annotations

from typing import Final

import webrtcvad

RATES: Final = (8000, 16000, 32000, 48000)
FRAME_MS: Final = (10, 20, 30)


class WebrtcVad:
    """
    Speech or not, per 10, 20 or 30 ms frame of mono s16le at 8, 16, 32 or 48 kHz.

    ``aggressiveness`` runs from 0 (lets most noise through as speech) to 3 (strictest).
    About 3 microseconds per 20 ms frame.
    """

    def __init__(self, aggressiveness: int, rate: int = 16000) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be between 0 and 3, got {aggressiveness}")
        if rate not in RATES:
            raise ValueError(f"webrtcvad accepts {', '.join(map(str, RATES))} Hz, not {rate}")
        self.rate = rate
        self._frame_sizes = frozenset(rate * ms // 1000 * 2 for ms in FRAME_MS)
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes) -> bool:
        if len(frame) not in self._frame_sizes:
            # webrtcvad itself only says "Error while processing frame".
            raise ValueError(
                f"webrtcvad needs frames of {', '.join(map(str, FRAME_MS))} ms "
                f"({', '.join(map(str, sorted(self._frame_sizes)))} bytes at {self.rate} Hz), "
                f"got {len(frame)} bytes"
            )
        return bool(self._vad.is_speech(frame, self.rate))
