"""microWakeWord on real (espeak-ng) speech: what it detects, when, and what it costs."""

from __future__ import annotations

import time
from array import array

import numpy as np
import pytest
from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

from coze_edge.adapters.microwakeword import Features, StreamingModel, builtin_manifest
from coze_edge.adapters.wakeword import QUIET_PEAK, WakeWordDetector, probability_cutoff
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE, AudioFormat
from coze_edge.core.wake import WAKE_WORDS
from tests.support.data import DATA

BLOCK = CAPTURE.frame_bytes(60)  # what a microphone delivers


def audio(name: str, fmt: AudioFormat = CAPTURE) -> bytes:
    return read_wav_as(DATA / name, fmt)


def blocks(pcm: bytes, size: int = BLOCK) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def detections(detector: WakeWordDetector, pcm: bytes, size: int = BLOCK) -> list[float]:
    """Audio times (s) of the detections, feeding ``pcm`` in blocks of ``size`` bytes."""
    found = []
    for block in blocks(pcm, size):
        if detector.process(block):
            assert detector.last_detection_s is not None
            found.append(detector.last_detection_s)
    return found


def speech_spans(pcm: bytes, *, min_gap_s: float = 0.3) -> list[tuple[float, float]]:
    """(start, end) seconds of the loud stretches, merging those less than ``min_gap_s`` apart."""
    frame = CAPTURE.frame_bytes(10)
    values = np.frombuffer(pcm[: len(pcm) // frame * frame], dtype="<i2").astype(np.float64)
    energy = np.sqrt(np.mean(values.reshape(-1, frame // 2) ** 2, axis=1))
    spans: list[list[float]] = []
    for index in np.flatnonzero(energy > 0.05 * energy.max()):
        start, end = index / 100, (index + 1) / 100
        if spans and start - spans[-1][1] < min_gap_s:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(start, end) for start, end in spans]


@pytest.mark.parametrize(
    ("word", "name"),
    [("okay_nabu", "wake-okay-nabu.wav"), ("alexa", "wake-alexa.wav")],
)
def test_wake_word_is_detected_once(word: str, name: str) -> None:
    """Each model detects its own spoken word, once, shortly after the word ends."""
    pcm = audio(name)
    [(_, word_end)] = speech_spans(pcm)

    found = detections(WakeWordDetector(word), pcm)

    assert len(found) == 1
    print(f"{word}: detected {1000 * (found[0] - word_end):.0f} ms after the word ends")
    assert word_end < found[0] < word_end + 0.5


@pytest.mark.parametrize("name", ["utterance-weather.wav", "two-utterances.wav"])
@pytest.mark.parametrize("word", WAKE_WORDS)
def test_other_speech_wakes_nothing(word: str, name: str) -> None:
    """Ordinary questions wake no model, even at the highest sensitivity."""
    detector = WakeWordDetector(word, sensitivity=1.0)
    assert detections(detector, audio(name)) == []


@pytest.mark.parametrize(
    ("word", "name"), [("okay_nabu", "wake-alexa.wav"), ("alexa", "wake-okay-nabu.wav")]
)
def test_the_other_wake_word_wakes_nothing(word: str, name: str) -> None:
    """A model ignores another model's wake word."""
    assert detections(WakeWordDetector(word, sensitivity=1.0), audio(name)) == []


def test_refractory_period_swallows_a_repeat() -> None:
    """The word said twice within the refractory period wakes once; after it, twice."""
    pcm = audio("wake-okay-nabu.wav")  # 1.53 s: the repeat is detected 1.53 s after the first
    gap = bytes(CAPTURE.frame_bytes(1000))

    assert len(detections(WakeWordDetector("okay_nabu"), pcm + pcm)) == 1
    # The model itself fires for about half a second after each word.
    assert len(detections(WakeWordDetector("okay_nabu", refractory_s=0), pcm)) > 1
    assert len(detections(WakeWordDetector("okay_nabu", refractory_s=1.0), pcm + pcm)) == 2
    found = detections(WakeWordDetector("okay_nabu", refractory_s=2.0), pcm + gap + pcm)
    assert len(found) == 2
    assert found[1] - found[0] == pytest.approx(2.53, abs=0.05)


def test_detection_comes_before_the_question() -> None:
    """In "Okay Nabu, what is the weather?" the detection lands in the pause before the question."""
    pcm = audio("wake-okay-nabu-then-question.wav")
    (_, wake_end), (question_start, _) = speech_spans(pcm)
    detector = WakeWordDetector("okay_nabu")

    fed = bytearray()
    for block in blocks(pcm):
        fed += block
        if detector.process(block):
            break
    detected = detector.last_detection_s
    assert detected is not None

    print(
        f"detected {1000 * (detected - wake_end):.0f} ms after the wake word, "
        f"{1000 * (question_start - detected):.0f} ms before the question"
    )
    assert wake_end < detected < question_start
    # What the caller sends upstream: the audio after the detection point, from this block on.
    after = round((detector.audio_s - detected) * CAPTURE.rate) * 2
    assert 0 <= after < BLOCK
    assert detector.audio_s == len(fed) / (2 * CAPTURE.rate)


@pytest.mark.parametrize("size", [2, 7, 320, 961, 3200], ids=lambda size: f"{size}-bytes")
def test_chunking_does_not_change_the_detection(size: int) -> None:
    """The detection comes at the same audio time however the audio is cut up."""
    pcm = audio("wake-okay-nabu.wav")
    reference = detections(WakeWordDetector("okay_nabu"), pcm, CAPTURE.frame_bytes(10))

    assert detections(WakeWordDetector("okay_nabu"), pcm, size) == reference


def test_other_capture_rates_are_resampled() -> None:
    """At a 48 kHz capture rate the word is detected at about the same time."""
    at_16k = detections(WakeWordDetector("okay_nabu"), audio("wake-okay-nabu.wav"))
    pcm = audio("wake-okay-nabu.wav", AudioFormat(48000))

    at_48k = detections(WakeWordDetector("okay_nabu", rate=48000), pcm, BLOCK * 3)

    assert len(at_48k) == 1
    assert at_48k[0] == pytest.approx(at_16k[0], abs=0.035)


def test_reset_forgets_the_audio_and_the_refractory_period() -> None:
    """After reset the same audio is detected again, at the same time from the new start."""
    pcm = audio("wake-okay-nabu.wav")
    detector = WakeWordDetector("okay_nabu")
    first = detections(detector, pcm)

    detector.reset()

    assert detector.last_detection_s is None
    assert detector.audio_s == 0
    assert detections(detector, pcm) == first


def test_cpu_per_audio_second() -> None:
    """Listening costs well under 5 % of a core."""
    pcm = audio("two-utterances.wav") + audio("wake-okay-nabu-then-question.wav")
    detector = WakeWordDetector("okay_nabu")

    started = time.process_time()
    detections(detector, pcm)
    cpu = time.process_time() - started

    seconds = len(pcm) / (2 * CAPTURE.rate)
    print(f"wake word: {1000 * cpu / seconds:.1f} ms CPU per audio second")
    assert cpu / seconds < 0.05


def test_the_model_rests_in_near_silence_and_detects_as_if_it_had_not() -> None:
    """After REST_AFTER_S of near-silence the model stops running; sound wakes it with the
    quiet before it, and every detection comes at the same audio time as from a detector
    that never rests (within one 30 ms inference step)."""
    quiet = bytes(CAPTURE.frame_bytes(5000))
    hiss = (array("h", [QUIET_PEAK, -QUIET_PEAK]) * (CAPTURE.rate // 2)).tobytes()  # 1 s
    pcm = quiet + audio("wake-okay-nabu.wav") + hiss + audio("wake-okay-nabu-then-question.wav")
    resting = WakeWordDetector("okay_nabu")
    awake = WakeWordDetector("okay_nabu", rest_after_s=None)

    rested = []
    found = []
    for block in blocks(pcm):
        if resting.process(block):
            assert resting.last_detection_s is not None
            found.append(resting.last_detection_s)
        rested.append(resting.rests)
    expected = detections(awake, pcm)

    assert len(expected) == 2
    assert found == pytest.approx(expected, abs=0.035)
    assert any(rested[: len(quiet) // BLOCK])  # in the leading silence
    assert not rested[-1]  # the question after the word is no silence
    assert resting.audio_s == awake.audio_s


def test_a_louder_hiss_keeps_the_model_awake() -> None:
    """Noise above QUIET_PEAK is no near-silence: the model keeps running."""
    hiss = (array("h", [QUIET_PEAK + 1, -QUIET_PEAK]) * CAPTURE.rate).tobytes()  # 2 s
    detector = WakeWordDetector("okay_nabu")
    for block in blocks(hiss):
        detector.process(block)
        assert not detector.rests


@pytest.mark.parametrize("word", WAKE_WORDS)
def test_the_numpy_free_model_computes_what_pymicro_wakeword_computes(word: str) -> None:
    """StreamingModel and Features (no numpy) give pymicro-wakeword's own probabilities,
    exactly, for every built-in model, over speech, silence and the wake words."""
    pcm = audio("wake-okay-nabu-then-question.wav") + audio("wake-alexa.wav") + bytes(6400)
    theirs_model, theirs_features = MicroWakeWord.from_builtin(Model(word)), MicroWakeWordFeatures()
    ours_model, ours_features = StreamingModel(builtin_manifest(word)), Features()
    theirs, ours = [], []
    for block in blocks(pcm, 320):
        for features in theirs_features.process_streaming(block):
            theirs.append(theirs_model.process_streaming_prob(features))
        for frame in ours_features.process_streaming(block):
            ours.append(ours_model.process_streaming_prob(frame))
    assert ours_model.probability_cutoff == theirs_model.probability_cutoff
    assert len(ours) == len(theirs) > 300
    assert ours == theirs
    if word in ("okay_nabu", "alexa"):  # spoken in the audio: their detections are compared
        assert len(set(ours)) > 20
        assert max(ours) > ours_model.probability_cutoff


def test_unknown_word_names_the_valid_ones() -> None:
    """A word without a model is refused with the list of those that have one."""
    with pytest.raises(ValueError, match="okay_nabu, alexa, hey_jarvis, hey_mycroft"):
        WakeWordDetector("hey_siri")


def test_the_words_on_offer_are_the_models_that_ship() -> None:
    """WAKE_WORDS (what the config accepts) are exactly pymicro-wakeword's built-in models."""
    assert sorted(model.value for model in Model) == sorted(WAKE_WORDS)


@pytest.mark.parametrize("sensitivity", [-0.1, 1.5])
def test_sensitivity_outside_0_to_1_is_refused(sensitivity: float) -> None:
    """Sensitivity is a fraction."""
    with pytest.raises(ValueError, match="between 0 and 1"):
        WakeWordDetector("alexa", sensitivity=sensitivity)


def test_sensitivity_moves_the_cutoff_around_the_model_default() -> None:
    """0.5 keeps the model's cutoff; 0 raises it and 1 lowers it, staying inside (0, 1)."""
    assert probability_cutoff(0.85, 0.5) == pytest.approx(0.85)
    assert probability_cutoff(0.85, 0.0) == pytest.approx(0.95)
    assert probability_cutoff(0.85, 1.0) == pytest.approx(0.55)
    assert probability_cutoff(0.97, 1.0) == pytest.approx(0.91)
    steps = [probability_cutoff(0.9, s / 10) for s in range(11)]
    assert steps == sorted(steps, reverse=True)
    assert WakeWordDetector("okay_nabu", sensitivity=0.5).cutoff == pytest.approx(0.85)
