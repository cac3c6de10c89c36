"""The echo gate: when to start a fresh canceller, and which cleaned blocks are residual echo."""

from __future__ import annotations

import numpy as np
import pytest

from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from coze_edge.core.echo import EchoGate
from tests.support.data import DATA

RATE = 16000
FRAME = RATE // 100  # samples in the 10 ms render frames
BLOCK = RATE * 60 // 1000  # samples in a 60 ms microphone block
DELAY = 2 * BLOCK  # the echo comes back 120 ms after it was played


def pcm(signal: np.ndarray) -> bytes:
    return bytes(np.clip(np.rint(signal), -32768, 32767).astype("<i2").tobytes())


def noise(samples: int, seed: int, level: float = 3000.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, level, samples)


def delayed(signal: np.ndarray, samples: int, gain: float = 0.3) -> np.ndarray:
    """What the microphone hears of ``signal`` played ``samples`` earlier."""
    echo = np.zeros_like(signal)
    echo[samples:] = gain * signal[: len(signal) - samples]
    return echo


def verdicts(
    far: np.ndarray, heard: np.ndarray, cleaned: np.ndarray | None = None, *, delay: int = 0
) -> list[bool]:
    """Play ``far`` and hear ``heard`` in step, 60 ms at a time; the gate's verdict per block."""
    gate = EchoGate(RATE)
    cleaned = heard if cleaned is None else cleaned
    found = []
    for start in range(0, len(heard) // BLOCK * BLOCK, BLOCK):
        for frame in range(start, start + BLOCK, FRAME):
            gate.played(pcm(far[frame : frame + FRAME]))
        block = slice(start, start + BLOCK)
        found.append(gate.residual_echo(pcm(heard[block]), pcm(cleaned[block]), delay=delay))
    return found


def test_the_speakers_sound_at_the_echos_delay_is_residual_echo() -> None:
    """Once the echo arrives (after two blocks of silence), every block of it is echo."""
    far = noise(10 * BLOCK, seed=1)

    assert verdicts(far, delayed(far, DELAY)) == [False] * 2 + [True] * 8


def test_a_voice_unlike_the_speakers_is_not_echo() -> None:
    """The user talking while nothing of the speaker's sound comes back is never silenced."""
    far = noise(10 * BLOCK, seed=1)

    assert verdicts(far, noise(10 * BLOCK, seed=2)) == [False] * 10


def test_the_speakers_sound_at_another_delay_is_not_echo() -> None:
    """
    A cleaned block that resembles the speaker's audio only far from the echo's delay (here
    25 ms later than the microphone heard it) is not judged echo.
    """
    far = noise(10 * BLOCK, seed=1)
    heard = delayed(far, DELAY)

    assert verdicts(far, heard, cleaned=delayed(heard, 400)) == [False] * 10


def test_the_cancellers_own_delay_is_allowed_for() -> None:
    """
    Cleaned audio running 4 ms (the canceller's delay) behind what was heard still matches
    (from the second block of echo on: the first is late by more than the speaker has played).
    """
    far = noise(10 * BLOCK, seed=1)
    heard = delayed(far, DELAY)

    assert verdicts(far, heard, cleaned=delayed(heard, 64, gain=1.0))[3:] == [True] * 7


def test_inserted_delay_is_taken_into_account() -> None:
    """Cleaned audio that runs late by ``delay`` samples besides is matched where it belongs."""
    far = noise(10 * BLOCK, seed=1)
    heard = delayed(far, DELAY)
    late = delayed(heard, FRAME, gain=1.0)  # one 10 ms frame inserted

    assert verdicts(far, heard, cleaned=late, delay=FRAME)[3:] == [True] * 7
    assert verdicts(far, heard, cleaned=late, delay=0)[3:] == [True] * 7  # within the slack
    assert verdicts(far, heard, cleaned=delayed(heard, 6 * FRAME, 1.0), delay=0) == [False] * 10


def test_quiet_blocks_are_not_judged() -> None:
    """A cleaned block below -50 dBFS is left alone, however much it follows the speaker."""
    far = noise(10 * BLOCK, seed=1)
    heard = delayed(far, DELAY)

    assert verdicts(far, heard, cleaned=heard / 100) == [False] * 10


def test_a_jump_in_the_echos_delay_is_followed_within_five_blocks() -> None:
    """
    The echo's delay is looked for again every fifth block (here the 5th, 10th, 15th...):
    after a jump of 20 ms (beyond the slack) in the 9th, the echo is caught again from the
    10th on.
    """
    far = noise(20 * BLOCK, seed=1)
    heard = delayed(far, DELAY)
    heard[8 * BLOCK :] = delayed(far, DELAY + 2 * FRAME)[8 * BLOCK :]

    assert verdicts(far, heard) == [False] * 2 + [True] * 6 + [False] + [True] * 11


def test_sound_after_a_second_of_silence_asks_for_a_fresh_canceller() -> None:
    """
    The first sound ever does not (the canceller is fresh), nor sound after a short pause;
    sound after a pause of a second or more does.
    """
    gate = EchoGate(RATE)
    sound, silence = pcm(noise(FRAME, seed=1)), bytes(2 * FRAME)
    frames = [sound] * 3 + [silence] * 99 + [sound] + [silence] * 100 + [sound, sound]

    fresh = [index for index, frame in enumerate(frames) if gate.played(frame)]

    assert fresh == [203]


def test_faint_render_audio_counts_as_silence() -> None:
    """Render frames whose samples stay within +-31 (below -60 dBFS) are silence."""
    gate = EchoGate(RATE)
    faint = pcm(np.full(FRAME, 31.0))
    frames = [pcm(noise(FRAME, seed=1))] + [faint] * 100 + [pcm(np.full(FRAME, -32.0))]

    assert [gate.played(frame) for frame in frames][-1] is True


def test_a_rate_must_be_positive() -> None:
    """A rate of zero is refused."""
    with pytest.raises(ValueError, match="positive"):
        EchoGate(0)


def test_after_the_path_moved_blocks_are_echo_for_a_while_and_the_delay_is_found_again() -> None:
    """
    An underrun or overrun (``path_moved``) in the 9th block, where the echo's delay jumps
    by 20 ms: the next 800 ms (14 blocks of 60 ms) are echo whatever they hold, and the new
    delay is found at once, so the echo is caught from then on (without the call, only from
    the 10th block: see above). A voice unlike the speaker's is echo only while held.
    """
    far = noise(30 * BLOCK, seed=1)
    heard = delayed(far, DELAY)
    heard[8 * BLOCK :] = delayed(far, DELAY + 2 * FRAME)[8 * BLOCK :]
    voice = noise(30 * BLOCK, seed=2)
    for cleaned, expected in (
        (heard, [False] * 2 + [True] * 28),
        (voice, [False] * 8 + [True] * 14 + [False] * 8),
    ):
        gate = EchoGate(RATE)
        found = []
        for block, start in enumerate(range(0, 30 * BLOCK, BLOCK)):
            for frame in range(start, start + BLOCK, FRAME):
                gate.played(pcm(far[frame : frame + FRAME]))
            if block == 8:
                gate.path_moved()
            part = slice(start, start + BLOCK)
            found.append(gate.residual_echo(pcm(heard[part]), pcm(cleaned[part])))
        assert found == expected


def test_nothing_is_held_for_echo_while_the_speaker_is_silent() -> None:
    """The path moving while nothing plays silences nothing: there is no echo to fear."""
    gate = EchoGate(RATE)
    gate.path_moved()
    voice = pcm(noise(BLOCK, seed=2))

    assert [gate.residual_echo(voice, voice) for _ in range(3)] == [False] * 3


def double_talk(far: np.ndarray, heard: np.ndarray, *, moved_at: int | None = None) -> list[bool]:
    """As ``verdicts`` (the canceller's output taken as silent), the double-talk verdict per
    block; ``moved_at``: the block before which the sound devices lost audio."""
    gate = EchoGate(RATE)
    found = []
    for number, start in enumerate(range(0, len(heard) // BLOCK * BLOCK, BLOCK)):
        for frame in range(start, start + BLOCK, FRAME):
            gate.played(pcm(far[frame : frame + FRAME]))
        if number == moved_at:
            gate.path_moved()
        gate.residual_echo(pcm(heard[start : start + BLOCK]), bytes(2 * BLOCK))
        found.append(gate.double_talk)
    return found


def voice_from(block: int, blocks: int, level: float, seed: int = 2) -> np.ndarray:
    """Someone else's sound (not the speaker's), from ``block`` on."""
    voice = noise(blocks * BLOCK, seed=seed, level=level)
    voice[: block * BLOCK] = 0
    return voice


def test_a_voice_over_the_echo_is_double_talk() -> None:
    """Once the echo's delay is known and the echo has followed the speaker closely for a
    while (12 blocks), blocks that are mostly another sound than the echo (here 10 dB
    louder than it) are double talk; the echo alone never is."""
    far = noise(24 * BLOCK, seed=1)
    echo = delayed(far, DELAY)

    assert double_talk(far, echo) == [False] * 24
    talk = double_talk(far, echo + voice_from(18, 24, level=3000.0))
    assert talk == [False] * 18 + [True] * 6
    # As loud as the echo (likeness 0.75): not yet; the echo alone went as low as 0.65.
    assert not any(double_talk(far, echo + voice_from(18, 24, level=800.0)))
    early = double_talk(far, echo + voice_from(8, 24, level=3000.0))
    assert early[:14] == [False] * 14  # the echo heard alone in 6 blocks only: no evidence yet


def reverberant(signal: np.ndarray, reflections: float, seed: int = 3) -> np.ndarray:
    """``signal`` through a room: the direct sound at DELAY (0.3), then 300 ms of decaying
    reflections, ``reflections`` their gain in all (a kitchen's tiles)."""
    taps = RATE * 300 // 1000
    rng = np.random.default_rng(seed)
    response = rng.normal(0, 1, taps) * np.exp(-np.arange(taps) / (RATE * 0.08))
    response *= reflections / np.sqrt(np.sum(response**2))
    response[0] = 0.3
    out = np.zeros(len(signal) + taps + DELAY)
    out[DELAY : DELAY + len(signal) + taps - 1] = np.convolve(signal, response)
    return out[: len(signal)]


@pytest.mark.parametrize("reflections", [0.15, 0.3])
def test_a_smeared_echo_gives_no_double_talk(reflections: float) -> None:
    """Speech through a reverberant room: its echo alone follows the speaker only loosely
    (0.86 and 0.57 median likeness here, as low as 0.16 where a word ends and the
    reflections go on), which would pass for double talk in 12 and 31 of 77 blocks; the
    echo has not been predictable, so there is no evidence at all (the cleaned audio alone
    ducks the reply there)."""
    speech = np.frombuffer(read_wav_as(DATA / "utterance-weather.wav", CAPTURE), "<i2")
    far = np.tile(speech.astype(np.float64), 3)

    assert not any(double_talk(far, reverberant(far, reflections)))


def test_a_faint_sound_over_the_echo_is_not_double_talk() -> None:
    """A faint echo (120 RMS) under room noise (165 RMS): together over -45 dBFS, and not
    much like the speaker (0.59), yet what is not echo stays under -45 dBFS: no talker."""
    far = noise(30 * BLOCK, seed=1, level=1000.0)
    far[18 * BLOCK :] *= 0.4  # the echo: 300 RMS, then 120 from block 20
    heard = delayed(far, DELAY) + voice_from(22, 30, level=165.0)

    assert double_talk(far, heard) == [False] * 30
    assert any(double_talk(far, heard + voice_from(22, 30, level=300.0)))  # the control


def test_a_voice_where_the_speaker_was_quiet_is_not_double_talk() -> None:
    """Nothing of the speaker's comes back at the echo's delay: the canceller has nothing to
    suppress, and its own output says whether that is speech."""
    far = noise(30 * BLOCK, seed=1)
    far[18 * BLOCK :] = 0
    heard = delayed(far, DELAY) + voice_from(22, 30, level=3000.0)

    assert double_talk(far, heard) == [False] * 30


def test_without_the_echos_delay_there_is_no_double_talk() -> None:
    """A voice from the start (the echo never heard alone, so its delay is not known), or
    in the moments after the sound devices lost audio (the delay may have jumped)."""
    far = noise(30 * BLOCK, seed=1)
    echo = delayed(far, DELAY)

    assert double_talk(far, echo + voice_from(0, 30, level=3000.0)) == [False] * 30
    moved = double_talk(far, echo + voice_from(18, 30, level=3000.0), moved_at=18)
    assert moved == [False] * 30  # 0.8 s held: the 12 blocks (720 ms) after the move
    assert double_talk(far, echo + voice_from(18, 30, level=3000.0))[18:] == [True] * 12
