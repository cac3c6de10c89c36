"""
The files in tests/data: speech WAVs (README.md there says how each was made) and the
recorded Coze traces (coze-go test data, MIT, see LICENSE.coze-go), with their readers.
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).parents[1] / "data"


@dataclass(frozen=True)
class Trace:
    sent: list[dict[str, Any]]
    received: list[str]
    """Downstream frames exactly as they crossed the wire."""


def load_trace(name: str) -> Trace:
    lines = (DATA / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    sent: list[dict[str, Any]] = []
    received: list[str] = []
    for direction, frame in zip(lines[0::2], lines[1::2], strict=True):
        if direction == "send":
            sent.append(json.loads(frame))
        elif direction == "receive":
            received.append(frame)
        else:
            raise ValueError(f"unexpected direction {direction!r} in {name}")
    return Trace(sent, received)


def trace_audio(name: str) -> bytes:
    """The PCM of the trace's .wav: what the reply deltas carried."""
    with wave.open(str(DATA / f"{name}.wav"), "rb") as wav:
        return wav.readframes(wav.getnframes())
