"""
Wake-word detection with microWakeWord models (``pymicro-wakeword``; the models and the
TFLite runtime ship inside its wheel, run here by ``adapters/microwakeword.py`` without
numpy).

The models take 16 kHz mono audio in 10 ms chunks and compute a probability every 30 ms;
the library averages the last five (150 ms) and compares the mean with a cutoff. On espeak-ng
speech the detection comes 0.15 to 0.25 s after the wake word ends, and listening costs
about 2 ms of CPU per second of audio.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Callable
from typing import Final

from coze_edge.adapters.microwakeword import Features, StreamingModel, builtin_manifest
from coze_edge.adapters.resample import StreamResampler
from coze_edge.adapters.wake_model import WakeModel
from coze_edge.core.wake import WAKE_WORDS

log = logging.getLogger(__name__)

MODEL_RATE: Final = 16000
CHUNK_BYTES: Final = MODEL_RATE // 100 * 2  # 10 ms of 16-bit mono

QUIET_PEAK: Final = 64
"""Audio whose samples all stay within this (-54 dBFS) is near-silence for the model: a
muted or idle microphone, a silent room. Speech peaks far higher, even a soft voice
across a room; the model still hears the quiet before it (``REPLAY_S``)."""
REST_AFTER_S: Final = 1.0
"""After this much near-silence in a row the model rests (stops running) until a louder
block arrives: TensorFlow Lite's inference is most of the wake word's cost."""
REPLAY_S: Final = 1.0
"""When sound comes back, the model first hears up to this much of the quiet it skipped
(a soft onset below ``QUIET_PEAK`` included), then the sound: it wakes up where a model
that never rested would be after a second of quiet."""
REPLAY_BYTES: Final = round(REPLAY_S * MODEL_RATE) * 2 // CHUNK_BYTES * CHUNK_BYTES

SENSITIVITY_SPAN: Final = 3.0
"""How far sensitivity 0 or 1 moves the cutoff's distance from 1 (divided or multiplied)."""


def probability_cutoff(default: float, sensitivity: float) -> float:
    """
    The cutoff for a model whose own cutoff is ``default``, at ``sensitivity`` 0..1.

    0.5 keeps the model author's cutoff. Each model's cutoff sits at a different height
    (okay_nabu 0.85, alexa 0.90, hey_mycroft 0.95, hey_jarvis 0.97), so a fixed shift would
    mean different things for each; instead the distance from 1 is scaled geometrically,
    by up to ``SENSITIVITY_SPAN`` either way: ``1 - (1 - default) * 3 ** (2 * s - 1)``.

    ============  =====  =====  =====
    model         s=0    s=0.5  s=1
    ============  =====  =====  =====
    okay_nabu     0.950  0.85   0.55
    alexa         0.967  0.90   0.70
    hey_mycroft   0.983  0.95   0.85
    hey_jarvis    0.990  0.97   0.91
    ============  =====  =====  =====
    """
    if not 0 <= sensitivity <= 1:
        raise ValueError(f"sensitivity must be between 0 and 1, got {sensitivity}")
    return 1 - (1 - default) * math.pow(SENSITIVITY_SPAN, 2 * sensitivity - 1)


class WakeWordDetector:
    """
    Listens for one wake word in capture-format audio (mono s16le at ``rate``).

    ``process`` takes audio of any length and says whether the word was detected in it.
    After a detection, further ones are ignored for ``refractory_s`` of audio (the model
    keeps firing for a few hundred milliseconds after the word, and a user who repeats the
    word should not open two turns). Time is the audio itself, never the wall clock, so the
    same audio always gives the same detections. ``last_detection_s`` and ``audio_s`` say
    where the detection was: the audio after it is ``audio_s - last_detection_s`` seconds.
    """

    def __init__(
        self,
        word: str,
        *,
        model: WakeModel | None = None,
        sensitivity: float = 0.5,
        rate: int = MODEL_RATE,
        refractory_s: float = 2.0,
        rest_after_s: float | None = REST_AFTER_S,
        on_detected: Callable[[str], None] | None = None,
    ) -> None:
        """``on_detected(word)`` is called at each detection (Home Assistant's event).
        ``model``: a custom model (``wake.model``, checked), whose name ``word`` is.
        ``rest_after_s``: near-silence after which the model rests; None = never."""
        if model is not None and word != model.manifest.name:
            raise ValueError(f"the custom model is {model.manifest.name!r}, not {word!r}")
        if model is None and word not in WAKE_WORDS:
            raise ValueError(f"unknown wake word {word!r}; valid: {', '.join(WAKE_WORDS)}")
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if refractory_s < 0:
            raise ValueError(f"refractory_s must not be negative, got {refractory_s}")
        self.word = word
        self._on_detected = on_detected
        self.rate = rate
        self._model = StreamingModel(builtin_manifest(word) if model is None else model.path)
        self.cutoff = probability_cutoff(self._model.probability_cutoff, sensitivity)
        self._model.probability_cutoff = self.cutoff
        self._features = Features()
        self._refractory = round(refractory_s * MODEL_RATE)  # in model samples
        self._resampler = self._new_resampler()
        self._pending = b""
        self._input_bytes = 0  # fed to process() since the start or reset()
        self._samples = 0  # model-rate samples analysed since the start or reset()
        self._quiet_until = 0  # no detection is reported before this sample
        self._rest_after = None if rest_after_s is None else round(rest_after_s * MODEL_RATE)
        self._quiet_samples = 0  # near-silence in a row, at the model's rate
        self._skipped = b""  # while resting: the last REPLAY_S of the audio not analysed
        self.last_detection_s: float | None = None
        """Audio time (seconds since the start or ``reset``) of the latest detection."""
        log.debug("= wake word %s, cutoff %.3f", word, self.cutoff)

    @property
    def audio_s(self) -> float:
        """Seconds of audio fed since the start or ``reset``."""
        return self._input_bytes / (2 * self.rate)

    def process(self, pcm: bytes) -> bool:
        """
        Feed audio (any length); True if the wake word was detected in it, outside the
        refractory period of the previous detection.
        """
        self._input_bytes += len(pcm)
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        if self._rest_after is not None:
            if self._resting(pcm):
                return False
            if self._skipped:  # sound after a rest: the quiet before it first
                pcm, self._skipped = self._skipped + pcm, b""
        data = self._pending + pcm if self._pending else pcm
        whole = len(data) - len(data) % CHUNK_BYTES
        self._pending = data[whole:]
        detected = False
        for start in range(0, whole, CHUNK_BYTES):
            self._samples += CHUNK_BYTES // 2
            for features in self._features.process_streaming(data[start : start + CHUNK_BYTES]):
                if self._model.process_streaming(features) and self._samples >= self._quiet_until:
                    self._quiet_until = self._samples + self._refractory
                    self.last_detection_s = self._samples / MODEL_RATE
                    log.info("wake word %s detected at %.2f s", self.word, self.last_detection_s)
                    detected = True
        if detected and self._on_detected is not None:
            self._on_detected(self.word)
        return detected

    @property
    def rests(self) -> bool:
        """The model rests: the audio has been near-silence for ``rest_after_s``."""
        return bool(self._skipped)

    def _resting(self, pcm: bytes) -> bool:
        """
        True if ``pcm`` (model rate) is near-silence after enough of it: then it is kept
        (the last ``REPLAY_S``) but not analysed, and time goes on. A louder block ends the
        rest; the caller feeds the kept audio before it (rewound here: it is analysed now).
        """
        samples = array("h")
        samples.frombytes(pcm[: len(pcm) // 2 * 2])
        if samples and (max(samples) > QUIET_PEAK or min(samples) < -QUIET_PEAK):
            self._quiet_samples = 0
            self._samples -= len(self._skipped) // 2
            return False
        self._quiet_samples += len(samples)
        assert self._rest_after is not None
        if self._quiet_samples < self._rest_after:
            return False
        if not self._skipped:  # the rest begins: a partial chunk held back goes with it
            pcm, self._pending = self._pending + pcm, b""
        self._samples += len(pcm) // 2
        self._skipped = (self._skipped + pcm)[-REPLAY_BYTES:]
        return True

    def reset(self) -> None:
        """Forget all audio heard so far, and the refractory period; time starts at 0 again."""
        self._features.reset()
        self._model.reset()
        self._resampler = self._new_resampler()
        self._pending = b""
        self._input_bytes = 0
        self._samples = 0
        self._quiet_until = 0
        self._quiet_samples = 0
        self._skipped = b""
        self.last_detection_s = None

    def _new_resampler(self) -> StreamResampler | None:
        return None if self.rate == MODEL_RATE else StreamResampler(self.rate, MODEL_RATE)
