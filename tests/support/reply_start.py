"""
How much of a reply's start reaches the sink, and when: the measure behind
``audio.output_keep_open_s`` / ``output_warmup_ms`` (tests/test_output_warmup.py and
scripts/warmup-check).

The "reply" is a rising tone of constant loudness, so every 5 ms of it carries the same
energy and a missing slot cannot hide in a quiet syllable. It is found in a recording by
its middle (which always arrives), and each 5 ms slot of its first 100 ms is then checked
where it should be.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coze_edge.core.audio import alignment_scores
from coze_edge.core.levels import rising_tone

RATE = 24000
SLOT_MS = 5
START_MS = 100
"""The part of the reply whose arrival is judged."""
SLOT_LIKENESS = 0.9


def reply(rate: int = RATE) -> bytes:
    """A 600 ms reply stand-in (mono s16le at ``rate``)."""
    return rising_tone(rate, 0.6)


@dataclass(frozen=True, slots=True)
class Arrival:
    onset: int
    """Where the reply starts in the recording (samples)."""
    start_ms: int
    """How much of its first 100 ms is there, in 5 ms slots."""


def arrival(recording: bytes, played: bytes, rate: int = RATE) -> Arrival | None:
    """Where ``played`` sits in ``recording`` (both mono s16le at ``rate``) and how much
    of its first 100 ms arrived; None when it is not there at all. It is found by the best
    matching of three 100 ms pieces of its middle, so a glitch in one does not lose it."""
    best, onset = 0.0, 0
    for start_ms in (150, 250, 350):
        piece = played[2 * rate * start_ms // 1000 : 2 * rate * (start_ms + 100) // 1000]
        scores = alignment_scores(piece, recording, floor_rms=30.0)
        if len(scores) and float(np.max(scores)) > best:
            best = float(np.max(scores))
            onset = int(np.argmax(scores)) - rate * start_ms // 1000
    if best < SLOT_LIKENESS:
        return None
    x = np.frombuffer(recording[: len(recording) // 2 * 2], dtype="<i2").astype(np.float64)
    y = np.frombuffer(played, dtype="<i2").astype(np.float64)
    slot = rate * SLOT_MS // 1000
    arrived = 0
    for i in range(START_MS // SLOT_MS):
        at = onset + i * slot
        if at < 0 or at + slot > len(x):
            continue
        a, b = y[i * slot : (i + 1) * slot], x[at : at + slot]
        energy = float(np.dot(a, a) * np.dot(b, b))
        if energy and float(np.dot(a, b)) / np.sqrt(energy) >= SLOT_LIKENESS:
            arrived += SLOT_MS
    return Arrival(onset, arrived)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
