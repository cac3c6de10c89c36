"""Custom wake word models: a microWakeWord manifest and its .tflite, checked whole."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from coze_edge.adapters.wake_model import WakeModelError, load_wake_model
from coze_edge.adapters.wakeword import WakeWordDetector
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from tests.support.data import DATA
from tests.support.media import custom_wake_model


def test_a_custom_model_loads_under_its_own_name(tmp_path: Path) -> None:
    """The manifest and the .tflite beside it: named after the .tflite."""
    model = load_wake_model(custom_wake_model(tmp_path))

    assert model.manifest.name == "computer"
    assert model.manifest.phrase == "Computer"
    assert model.tflite == tmp_path / "computer.tflite"


def test_a_custom_model_detects_its_word(tmp_path: Path) -> None:
    """The detector runs the custom model (okay_nabu's, renamed) on committed speech."""
    model = load_wake_model(custom_wake_model(tmp_path))
    heard: list[str] = []
    detector = WakeWordDetector("computer", model=model, on_detected=heard.append)

    assert detector.process(read_wav_as(DATA / "wake-okay-nabu.wav", CAPTURE))
    assert heard == ["computer"]


def test_the_detector_refuses_a_name_that_is_not_the_models(tmp_path: Path) -> None:
    """The word and the custom model must agree."""
    model = load_wake_model(custom_wake_model(tmp_path))

    with pytest.raises(ValueError, match="the custom model is 'computer'"):
        WakeWordDetector("alexa", model=model)


def break_model(manifest: Path, how: str) -> None:
    tflite = manifest.with_suffix(".tflite")
    match how:
        case "missing manifest":
            manifest.unlink()
        case "not JSON":
            manifest.write_bytes(b"RIFF....WAVE")
        case "not a manifest":
            manifest.write_text(json.dumps({"name": "computer"}))
        case "missing model":
            tflite.unlink()
        case "model not TFLite":
            tflite.write_bytes(b"\x7fELF" + bytes(100))
        case "model corrupt":
            # TensorFlow Lite's identifier, then garbage: pymicro-wakeword alone would
            # hand TensorFlow Lite's NULL to its interpreter and crash the process.
            tflite.write_bytes(tflite.read_bytes()[:8] + bytes(range(256)) * 8)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing manifest", "cannot read"),
        ("not JSON", "is not a microWakeWord manifest (not JSON"),
        ("not a manifest", '"type" is None, not "micro"'),
        ("missing model", "names computer.tflite, but cannot read"),
        ("model not TFLite", "is not a TensorFlow Lite model"),
        ("model corrupt", "is not a TensorFlow Lite model TensorFlow Lite can load"),
    ],
)
def test_an_unusable_model_is_refused_with_the_reason(
    tmp_path: Path, how: str, message: str
) -> None:
    """Each way the files can be wrong is a WakeModelError saying so, never a crash."""
    manifest = custom_wake_model(tmp_path)
    break_model(manifest, how)

    with pytest.raises(WakeModelError, match=re.escape(message)):
        load_wake_model(manifest)
