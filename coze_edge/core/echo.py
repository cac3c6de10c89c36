"""
What the echo canceller gets wrong, decided from the numbers: when to start a fresh one, and
which cleaned microphone blocks are still the speaker's sound. Pure; the canceller itself
(WebRTC's, through livekit) is ``coze_edge.adapters.apm``.

A fresh canceller: a converged canceller can let the start of the next reply through after
a pause (see the adapter's notes), so sound after at least ``FRESH_AFTER_SILENCE_S`` of
silence starts a fresh one.

Residual echo: each cleaned block is compared with what the speaker played in the last half
second, at the echo's delay (found in the microphone's audio before cleaning, as render and
capture stream positions): a block that follows the speaker's audio there (normalized
cross-correlation above ``ECHO_LIKENESS_MAX``) is residual echo and becomes silence. When
the echo's delay jumps mid-reply (a sample dropped or repeated somewhere between the speaker
and the microphone), the canceller leaks at -20 to -35 dBFS for up to 360 ms before it has
re-adapted: long enough to pass for the user barging in. Measured offline (the reply through
a synthetic echo path of 50-250 ms, render blocks fed with +-20 ms of jitter, a 1-10 ms jump
in the delay at a random moment; 60 runs): a leak filled at least 240 ms of a 480 ms window
above -45 dBFS (what a barge-in needs) in 23 runs without the check and in 5 with it. The
user talking over the reply (30 runs) lost 4 of 628 blocks to it. Looking only at the echo's
delay, a voice that merely resembles the speaker's (same pitch, say) at some other delay
does not count.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Final

from coze_edge.core.audio import alignment_scores, rms

FRESH_AFTER_SILENCE_S: Final = 1.0
"""Render audio after at least this much silence starts a fresh echo canceller."""
SILENT_PEAK: Final = 32
"""A render frame whose samples all stay below this (-60 dBFS) is silence."""
ECHO_LIKENESS_MAX: Final = 0.5
"""A cleaned block that correlates better than this with the speaker's recent audio is
residual echo."""
RENDER_HISTORY_S: Final = 0.5
"""How much of the speaker's audio a cleaned block is compared with: the echo's delay
(sound device buffers and the way back to the microphone) must be shorter."""
JUDGED_MIN_RMS: Final = 100.0
"""Blocks quieter than this (-50 dBFS) are not judged: too faint to matter."""
MODULE_DELAY_MAX: Final = 160
"""The canceller's own delay on the capture stream, at most (samples; measured: 64 at 16 kHz)."""
DELAY_SLACK: Final = 48
"""How far (samples) from the echo's delay in the microphone's audio residual echo is
looked for: a delay that has just jumped by a few milliseconds is within it."""
ECHO_LOCK: Final = 0.8
"""The microphone's audio follows the speaker's this closely where the echo's delay is
found (echo alone correlates at 0.95-1.0 on the test paths)."""
LAG_EVERY: Final = 5
"""Once found, the echo's delay is looked for again in every fifth block (it may drift)."""
JUDGED_MIN_MS: Final = 20
"""Shorter blocks are not judged: too few samples for a correlation to mean anything."""
DOUBLE_TALK_LIKENESS: Final = 0.6
"""The microphone's audio (before cleaning) follows the speaker's at the echo's delay less
closely than this: more than half of what it hears (1 - 0.6², 64 %) is not the echo."""
DOUBLE_TALK_PREDICTABLE: Final = 0.9
"""... and only where the echo has been predictable: the median likeness of the last
``DOUBLE_TALK_HISTORY`` blocks judged is at least this (echo alone on the PulseAudio test
paths: 0.998-0.999, its lowest 1 % 0.73-0.79). In a room whose reverberation smears the
echo, echo alone follows the speaker less closely and would pass for double talk; there
the evidence stays off and the cleaned audio alone ducks the reply."""
DOUBLE_TALK_HISTORY: Final = 25
"""Blocks whose likeness makes that median (0.5 s of 20 ms blocks); fewer than
``DOUBLE_TALK_HISTORY // 2`` give no evidence yet."""
DOUBLE_TALK_MIN_RMS: Final = 184.0
"""... and that part is at least this loud (-45 dBFS, the barge-in level with the
canceller): room noise over a faint echo is no talker."""
MOVED_HOLD_S: Final = 0.8
"""After the sound devices lost or repeated audio (a speaker underrun, a microphone
overrun), the echo's delay has jumped and the canceller leaks until it re-adapts (up to
360 ms offline, see above; on PulseAudio under load a reply cut itself off 0.6 s after an
underrun): for this long, while the speaker plays, cleaned blocks are echo."""


class EchoGate:
    """
    Follows the speaker's audio and the microphone's, both mono s16le at ``rate``.

    ``played`` takes the render stream (what the canceller is given as the far end) and
    says when to start a fresh canceller; ``residual_echo`` takes each microphone block,
    before and after cleaning, and says whether the cleaned one is residual echo.
    """

    def __init__(self, rate: int) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._fresh_after = round(FRESH_AFTER_SILENCE_S * rate)  # samples
        self._history_samples = round(RENDER_HISTORY_S * rate)
        self._judged_min_bytes = 2 * (rate * JUDGED_MIN_MS // 1000)
        self._history = bytearray()  # the speaker's last RENDER_HISTORY_S
        self._sound_heard = False
        self._silent = 0  # render samples of silence since the last sound
        self._rendered = 0  # render stream samples so far
        self._captured = 0  # capture stream samples so far
        self._echo_lag: int | None = None  # capture position minus the render position heard
        self._judged_blocks = 0
        self._hold_samples = round(MOVED_HOLD_S * rate)
        self._held = 0  # capture samples still taken for echo after the path moved
        self._relock = False  # look for the echo's delay again at the next block
        self.double_talk = False
        """The last block heard (before cleaning) was someone talking over the speaker."""
        self._likeness: deque[float] = deque(maxlen=DOUBLE_TALK_HISTORY)

    def path_moved(self) -> None:
        """The sound devices lost or repeated audio (an underrun or overrun): the echo's
        delay may have jumped. Blocks heard while the speaker plays in the next
        ``MOVED_HOLD_S`` are echo; the delay is looked for again at once."""
        self._held = self._hold_samples
        self._relock = True

    def played(self, frame: bytes) -> bool:
        """
        ``frame`` goes to the speaker now (the adapter's frames are 10 ms). True if it is
        sound after a pause of at least ``FRESH_AFTER_SILENCE_S``: a fresh canceller should
        take it.
        """
        import numpy as np

        self._history += frame
        self._rendered += len(frame) // 2
        excess = len(self._history) - 2 * self._history_samples
        if excess > 0:
            del self._history[:excess]
        samples = np.frombuffer(frame, dtype="<i2", count=len(frame) // 2)
        if not samples.size or (
            int(samples.max()) < SILENT_PEAK and int(samples.min()) > -SILENT_PEAK
        ):
            self._silent += samples.size
            return False
        fresh = self._sound_heard and self._silent >= self._fresh_after
        self._sound_heard = True
        self._silent = 0
        return fresh

    def residual_echo(self, heard: bytes, cleaned: bytes, *, delay: int = 0) -> bool:
        """
        True if ``cleaned`` is the speaker's audio that the canceller let through: it
        follows the speaker's recent audio closely, at the echo's delay. ``heard`` is the
        next block of the capture stream before cleaning; ``cleaned`` is what the canceller
        gave back for it, running ``delay`` samples late besides its own few milliseconds.
        """
        import numpy as np

        heard_at = self._captured
        self._captured += len(heard) // 2
        held = self._held > 0 and self._sound_heard
        self._held = max(0, self._held - len(heard) // 2)
        self.double_talk = False
        if self._silent >= self._history_samples:  # nothing played lately
            return False
        if len(cleaned) < self._judged_min_bytes:
            return held
        self._judged_blocks += 1
        heard_rms = rms(heard)
        relock = self._echo_lag is None or self._relock or self._judged_blocks % LAG_EVERY == 0
        relock = relock and heard_rms >= JUDGED_MIN_RMS
        judge = rms(cleaned) >= JUDGED_MIN_RMS
        # A voice over the speaker: loud before cleaning, whatever the canceller made of it.
        talk = self._echo_lag is not None and heard_rms >= DOUBLE_TALK_MIN_RMS
        if relock:
            self._relock = False
        if not (relock or judge or talk):
            return held
        history = bytes(self._history)
        oldest = self._rendered - len(history) // 2  # render stream position of history[0]
        if relock:
            # Where the speaker's audio is in the microphone's: the render stream position
            # that the capture stream position hears, as a difference of the two.
            scores = alignment_scores(heard, history)
            if scores.size and scores.max() >= ECHO_LOCK:
                self._echo_lag = heard_at - (oldest + int(np.argmax(scores)))
        if held:
            return True
        if talk and self._echo_lag is not None:
            at = heard_at - self._echo_lag - oldest
            self.double_talk = self._talked_over(heard, heard_rms, history, at)
        if self._echo_lag is None or not judge:
            return False
        # The cleaned block is the heard audio of a little earlier: the canceller's own delay
        # (a few ms) and ``delay``. Only the stretch of history around the echo's delay is
        # compared.
        at = heard_at - delay - self._echo_lag - oldest
        low, high = max(0, at - MODULE_DELAY_MAX - DELAY_SLACK), at + DELAY_SLACK + 1
        near = history[2 * low : 2 * high + len(cleaned) - 2]
        scores = alignment_scores(cleaned, near)
        return bool(scores.size and scores.max() > ECHO_LIKENESS_MAX)

    def _talked_over(self, heard: bytes, heard_rms: float, history: bytes, at: int) -> bool:
        """
        Double talk: ``heard`` (before cleaning, ``heard_rms`` loud), whose echo starts at
        sample ``at`` of ``history``, is mostly not that echo. The canceller cannot say so
        itself: while the speaker plays, it suppresses the start of a voice that talks
        over it along with the echo (measured on the PulseAudio echo path: the cleaned
        audio stayed below -70 dBFS for the first 60 ms of a -9 dBFS voice, and reached
        the barge-in level only after about 100 ms). Judged only where the speaker's audio
        at the echo's delay is loud enough to have been heard, once the delay is known
        (which takes an echo that follows the speaker closely, ``ECHO_LOCK``), and while
        the echo has been predictable (``DOUBLE_TALK_PREDICTABLE``): where it is smeared
        (a reverberant room), there is no evidence and none is given.
        """
        n = len(heard) // 2
        if at < 0 or 2 * (at + n) > len(history):
            return False
        if rms(history[2 * at : 2 * (at + n)]) < JUDGED_MIN_RMS:
            return False  # the speaker was quiet there: the canceller lets a voice through
        low, high = max(0, at - DELAY_SLACK), at + DELAY_SLACK + 1
        scores = alignment_scores(heard, history[2 * low : 2 * high + len(heard) - 2])
        if not scores.size:
            return False
        likeness = float(scores.max())
        recent = self._likeness
        talked = (
            likeness < DOUBLE_TALK_LIKENESS
            and heard_rms * (1.0 - likeness * likeness) ** 0.5 >= DOUBLE_TALK_MIN_RMS
            and len(recent) >= DOUBLE_TALK_HISTORY // 2
            and statistics.median(recent) >= DOUBLE_TALK_PREDICTABLE  # before this block
        )
        recent.append(likeness)
        return talked
