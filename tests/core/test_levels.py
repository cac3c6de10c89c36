"""What `coze-edge devices --test` measures in a recording and what it suggests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coze_edge.core.levels import (
    SILENCE_DBFS,
    Levels,
    advise,
    dbfs,
    find_echo,
    frame_levels,
    measure,
    quiet_frames,
    rising_tone,
)

RATE = 16000


def s16(signal: np.ndarray) -> bytes:
    return bytes(np.clip(np.rint(signal), -32768, 32767).astype("<i2").tobytes())


def noise(seconds: float, level_dbfs: float, seed: int = 1) -> np.ndarray:
    """White noise whose RMS is ``level_dbfs``."""
    rms = 32768 * 10 ** (level_dbfs / 20)
    return np.random.default_rng(seed).normal(0.0, rms, round(seconds * RATE))


def speech_like(seconds: float, level_dbfs: float) -> np.ndarray:
    """Bursts of a 300 Hz tone, on for 200 ms and off for 200 ms, at ``level_dbfs`` RMS."""
    t = np.arange(round(seconds * RATE)) / RATE
    on = (t % 0.4) < 0.2
    return np.sin(2 * np.pi * 300 * t) * on * 32768 * 10 ** (level_dbfs / 20) * math.sqrt(2)


def levels(**changes: float) -> Levels:
    values = {
        "peak_dbfs": -6.0,
        "speech_dbfs": -20.0,
        "noise_dbfs": -70.0,
        "clipped_samples": 0,
        "clipped_ms": 0.0,
        "duration_s": 5.0,
    }
    values.update(changes)
    return Levels(
        peak_dbfs=values["peak_dbfs"],
        speech_dbfs=values["speech_dbfs"],
        noise_dbfs=values["noise_dbfs"],
        clipped_samples=int(values["clipped_samples"]),
        clipped_ms=values["clipped_ms"],
        duration_s=values["duration_s"],
    )


def test_dbfs_of_full_scale_half_and_silence() -> None:
    """Full scale is 0 dBFS, half is -6, nothing is the silence floor."""
    assert dbfs(32768) == 0.0
    assert dbfs(16384) == pytest.approx(-6.02, abs=0.01)
    assert dbfs(0) == SILENCE_DBFS


def test_speech_noise_and_peak_are_measured() -> None:
    """Bursts at -20 dBFS over noise at -60: speech, noise floor and peak read back."""
    signal = speech_like(4.0, -20.0) + noise(4.0, -60.0)

    measured = measure(s16(signal), RATE)

    assert measured.speech_dbfs == pytest.approx(-20.0, abs=0.5)
    assert measured.noise_dbfs == pytest.approx(-60.0, abs=1.0)
    assert measured.peak_dbfs == pytest.approx(-17.0, abs=0.5)
    assert measured.clipped_samples == 0
    assert measured.duration_s == 4.0
    assert measured.speech_heard


def test_clipping_is_counted_in_samples_and_time() -> None:
    """A burst driven past full scale clips; the clipped 20 ms frames add up to its length."""
    signal = np.concatenate([noise(0.5, -60.0), speech_like(0.2, 6.0), noise(0.5, -60.0)])

    measured = measure(s16(signal), RATE)

    assert measured.clipped_samples > 1000
    assert measured.clipped_ms == pytest.approx(200, abs=40)


def test_the_pauses_are_the_frames_near_the_noise_floor() -> None:
    """Half of a speech-like recording is pauses: about half the frames are quiet."""
    pcm = s16(speech_like(2.0, -20.0) + noise(2.0, -60.0))

    quiet = quiet_frames(pcm, RATE, measure(pcm, RATE))

    assert 40 <= len(quiet) <= 55
    assert all(len(frame) == 640 for frame in quiet)
    assert len(frame_levels(pcm, RATE)) == 100


def test_an_echo_is_found_at_its_delay_and_level() -> None:
    """The tone played back 60 ms later, 20 dB down, over noise: found at 60 ms."""
    tone = np.frombuffer(rising_tone(RATE, 1.0), dtype="<i2").astype(np.float64)
    recorded = noise(2.0, -60.0)
    delay = round(0.060 * RATE)
    recorded[delay : delay + len(tone)] += tone * 0.1

    echo = find_echo(rising_tone(RATE, 1.0), s16(recorded), RATE)

    assert echo.audible
    assert echo.delay_ms == pytest.approx(60, abs=1)
    assert echo.level_dbfs == pytest.approx(dbfs(float(np.sqrt(np.mean(tone**2)))) - 20, abs=1)


def test_no_echo_in_a_recording_of_noise_alone() -> None:
    """Room noise never passes for the tone."""
    echo = find_echo(rising_tone(RATE, 1.0), s16(noise(2.0, -50.0)), RATE)

    assert not echo.audible
    assert echo.likeness < 0.2


def test_a_short_recording_holds_no_echo() -> None:
    """A recording shorter than the tone cannot hold it."""
    assert not find_echo(rising_tone(RATE, 1.0), bytes(100), RATE).audible


@pytest.mark.parametrize(
    ("noise_dbfs", "mode"), [(-75.0, 1), (-55.0, 2), (-40.0, 3)], ids=["quiet", "some", "noisy"]
)
def test_the_aggressiveness_follows_the_noise_floor(noise_dbfs: float, mode: int) -> None:
    """Quiet rooms get 1, some noise 2, a noisy room 3."""
    assert advise(levels(noise_dbfs=noise_dbfs), []).aggressiveness == mode


def test_a_vad_that_takes_the_pauses_for_speech_is_made_stricter() -> None:
    """In a quiet room whose noise the VAD hears as speech at 1 and 2, 3 is suggested."""
    advice = advise(levels(noise_dbfs=-75.0), [0.5, 0.3, 0.2, 0.01])

    assert advice.aggressiveness == 3
    assert "1%" in advice.aggressiveness_why


def test_a_quiet_microphone_gets_gain_in_whole_steps() -> None:
    """Speech at -38 dBFS: +18 dB brings it to the target's neighbourhood (-20)."""
    advice = advise(levels(speech_dbfs=-38.0, peak_dbfs=-25.0), [])

    assert advice.gain_db == 18.0
    assert advice.gain_why == "speech at -38 dBFS, about -20 with it"
    assert advice.warnings == ()


def test_the_gain_leaves_the_peaks_room() -> None:
    """Quiet speech with a loud peak: the gain stops 3 dB below full scale."""
    assert advise(levels(speech_dbfs=-40.0, peak_dbfs=-10.0), []).gain_db == 6.0


def test_a_loud_microphone_is_softened_and_the_mixer_named() -> None:
    """Speech at -8 dBFS: -12 dB, and the card's capture level is the better place."""
    advice = advise(levels(speech_dbfs=-8.0, peak_dbfs=-1.0), [])

    assert advice.gain_db == -12.0
    assert "alsamixer" in advice.gain_why


def test_clipping_gets_no_gain_and_a_warning() -> None:
    """A clipping input: 0 dB, and what to turn down instead."""
    advice = advise(levels(clipped_samples=500, clipped_ms=400.0, speech_dbfs=-5.0), [])

    assert advice.gain_db == 0.0
    assert any("capture level" in warning for warning in advice.warnings)


def test_no_speech_gets_no_gain_and_a_warning() -> None:
    """Nothing louder than the noise: check the microphone, its channel and mixer."""
    advice = advise(levels(speech_dbfs=-65.0, noise_dbfs=-70.0), [])

    assert advice.gain_db == 0.0
    assert any("no clear speech" in warning for warning in advice.warnings)


def test_a_noisy_room_is_warned_about() -> None:
    """Noise at -40 dBFS: noise suppression is suggested."""
    advice = advise(levels(noise_dbfs=-40.0), [])

    assert any("noise_suppression" in warning for warning in advice.warnings)


def test_a_microphone_past_all_gain_points_at_the_mixer() -> None:
    """Speech at -70 dBFS needs more than 30 dB: the card's capture level first."""
    advice = advise(levels(speech_dbfs=-70.0, peak_dbfs=-60.0, noise_dbfs=-90.0), [])

    assert advice.gain_db == 30.0
    assert any("very quiet" in warning for warning in advice.warnings)
