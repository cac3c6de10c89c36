"""
Media files a config names, made in a test's folder: a custom wake word model (a copy of
pymicro-wakeword's ``okay_nabu`` under another name, so committed speech wakes it) and
WAVs for custom earcons.
"""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pymicro_wakeword

BUILT_IN_MODELS = Path(pymicro_wakeword.__file__).parent / "models"


def custom_wake_model(folder: Path, name: str = "computer") -> Path:
    """``folder/<name>.json`` and its ``<name>.tflite``: okay_nabu's model, renamed; the
    manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUILT_IN_MODELS / "okay_nabu.tflite", folder / f"{name}.tflite")
    manifest = json.loads((BUILT_IN_MODELS / "okay_nabu.json").read_text())
    manifest.update(model=f"{name}.tflite", wake_word=name.capitalize())
    path = folder / f"{name}.json"
    path.write_text(json.dumps(manifest))
    return path


def tone_wav(
    path: Path, *, seconds: float = 0.3, rate: int = 22050, channels: int = 2, hz: float = 1000
) -> Path:
    """A sine tone at half scale as a 16-bit WAV (the same on every channel)."""
    t = np.arange(round(seconds * rate)) / rate
    mono = np.rint(np.sin(2 * np.pi * hz * t) * 16000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(mono, channels).tobytes())
    return path
