"""
A custom wake word: a microWakeWord model as its manifest (``model.json``) with the
``.tflite`` it names beside it, as microWakeWord's training writes them and
pymicro-wakeword's ``MicroWakeWord.from_config`` loads them.

Checked whole before anything uses it: pymicro-wakeword hands whatever TensorFlow Lite
makes of the file to its interpreter unchecked, and a file TensorFlow Lite refuses ends
the process with a segmentation fault. So the model is loaded once here through TensorFlow
Lite's C API (the library inside pymicro-wakeword's wheel), which says no instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from coze_edge.config.files import UnusableFile, read_regular_file
from coze_edge.core.wake import WakeManifest, parse_manifest

MANIFEST_LIMIT: Final = 64 * 1024
MODEL_LIMIT: Final = 32 * 1024 * 1024
"""microWakeWord's models are 20-80 kB; anything near this is not one."""
TFLITE_IDENTIFIER: Final = b"TFL3"
"""TensorFlow Lite's flatbuffer file identifier, at bytes 4 to 8."""


class WakeModelError(ValueError):
    """The custom wake word model cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class WakeModel:
    manifest: WakeManifest
    path: Path
    """The manifest."""
    tflite: Path


def load_wake_model(path: Path) -> WakeModel:
    """The model at ``path`` (its manifest), checked: WakeModelError if it cannot be used."""
    try:
        text = read_regular_file(path, limit=MANIFEST_LIMIT)
    except UnusableFile as exc:
        raise WakeModelError(exc.about(str(path))) from exc
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WakeModelError(f"{path} is not a microWakeWord manifest (not JSON: {exc})") from exc
    try:
        manifest = parse_manifest(data)
    except ValueError as exc:
        raise WakeModelError(f"{path}: {exc}") from exc
    tflite = path.parent / manifest.model
    try:
        model = read_regular_file(tflite, limit=MODEL_LIMIT)
    except UnusableFile as exc:
        raise WakeModelError(
            f"{path} names {manifest.model}, but {exc.about(str(tflite))}"
        ) from exc
    if model[4:8] != TFLITE_IDENTIFIER:
        raise WakeModelError(f"{tflite} is not a TensorFlow Lite model")
    if not _tflite_loads(tflite):
        raise WakeModelError(f"{tflite} is not a TensorFlow Lite model TensorFlow Lite can load")
    return WakeModel(manifest, path, tflite)


def _tflite_loads(path: Path) -> bool:
    """TensorFlow Lite reads ``path`` as a model (its C API returns NULL if not)."""
    from coze_edge.adapters.microwakeword import tflite

    try:
        lib = tflite()
    except RuntimeError as exc:  # pragma: no cover - the wheel ships the library
        raise WakeModelError(str(exc)) from exc
    model = lib.TfLiteModelCreateFromFile(str(path).encode())
    if not model:
        return False
    lib.TfLiteModelDelete(model)
    return True
