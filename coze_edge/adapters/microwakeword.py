"""
microWakeWord models without numpy: TensorFlow Lite's C API (the library inside
pymicro-wakeword's wheel) through ctypes, and pymicro-features' audio frontend (its C
extension, ``micro_features_cpp``).

pymicro-wakeword's own ``MicroWakeWord`` and ``MicroWakeWordFeatures`` do exactly this
with numpy arrays of a few dozen numbers every 30 ms; importing them loads numpy (about
18 MB of resident memory), which a device that listens all day would carry for nothing.
:class:`StreamingModel` is their ``process_streaming_prob`` number for number (the same
rounding, the same float32 dequantisation; ``tests/adapters/test_wakeword.py`` compares
the probabilities with theirs), and this module never imports ``pymicro_wakeword``: its
package imports numpy first thing, so only its files are used (found by
``importlib.util.find_spec``, which runs nothing).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import os
import statistics
import struct
from array import array
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

FEATURE_CHUNK_BYTES: Final = 320
"""10 ms of 16 kHz mono s16le: what the frontend takes at a time."""

_INT8, _UINT8 = 9, 3  # TfLiteType
_ARRAY_CODES: Final = {_INT8: "b", _UINT8: "B"}
_LIMITS: Final = {_INT8: (-128, 127), _UINT8: (0, 255)}


class _QuantizationParams(ctypes.Structure):
    _fields_ = (("scale", ctypes.c_float), ("zero_point", ctypes.c_int32))


def package_folder() -> Path:
    """pymicro-wakeword's folder, found without importing it (that would load numpy)."""
    spec = importlib.util.find_spec("pymicro_wakeword")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pymicro-wakeword is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_manifest(word: str) -> Path:
    """The manifest (``<word>.json``) of a model that ships inside pymicro-wakeword."""
    return package_folder() / "models" / f"{word}.json"


def library_path() -> Path:
    """TensorFlow Lite's C library inside pymicro-wakeword's wheel."""
    folder = package_folder() / "lib"
    library = next(iter(folder.glob("*tensorflowlite_c.*")), None)
    if library is None:  # pragma: no cover - the wheel ships it; a source build may not
        raise RuntimeError(f"TensorFlow Lite's library is missing from {folder}")
    return library


@functools.cache
def tflite() -> Any:
    """TensorFlow Lite's C API with the signatures used here (loaded once, as
    pymicro-wakeword loads it: globally, so that both may share it)."""
    lib = ctypes.CDLL(str(library_path()), mode=os.RTLD_GLOBAL)
    void, i32, size = ctypes.c_void_p, ctypes.c_int32, ctypes.c_size_t
    for name, argtypes, restype in (
        ("TfLiteModelCreateFromFile", [ctypes.c_char_p], void),
        ("TfLiteModelDelete", [void], None),
        ("TfLiteInterpreterCreate", [void, void], void),
        ("TfLiteInterpreterDelete", [void], None),
        ("TfLiteInterpreterAllocateTensors", [void], ctypes.c_int),
        ("TfLiteInterpreterInvoke", [void], ctypes.c_int),
        ("TfLiteInterpreterGetInputTensor", [void, i32], void),
        ("TfLiteInterpreterGetOutputTensor", [void, i32], void),
        ("TfLiteTensorByteSize", [void], size),
        ("TfLiteTensorDim", [void, i32], i32),
        ("TfLiteTensorType", [void], i32),
        ("TfLiteTensorQuantizationParams", [void], _QuantizationParams),
        ("TfLiteTensorCopyFromBuffer", [void, void, size], ctypes.c_int),
        ("TfLiteTensorCopyToBuffer", [void, void, size], ctypes.c_int),
    ):
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype
    return lib


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as numpy's float32 arithmetic gives it."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


class StreamingModel:
    """
    A microWakeWord model (its manifest: ``model.json`` beside its ``.tflite``), fed one
    feature frame at a time; every ``stride`` frames (3: 30 ms) it runs once and the mean
    of its last ``sliding_window_size`` outputs is compared with ``probability_cutoff``.
    """

    def __init__(self, manifest: Path) -> None:
        config = json.loads(manifest.read_text(encoding="utf-8"))
        self.probability_cutoff = float(config["micro"]["probability_cutoff"])
        self.sliding_window_size = int(config["micro"]["sliding_window_size"])
        self._path = str((manifest.parent / config["model"]).resolve()).encode()
        self._lib = tflite()
        self._model: int | None = None
        self._interpreter: int | None = None
        self._features: list[float] = []
        self._probabilities: deque[float] = deque(maxlen=self.sliding_window_size)
        self._load()

    def _load(self) -> None:
        lib = self._lib
        self._model = lib.TfLiteModelCreateFromFile(self._path)
        if not self._model:
            raise RuntimeError(f"TensorFlow Lite cannot load {self._path.decode()}")
        self._interpreter = lib.TfLiteInterpreterCreate(self._model, None)
        if not self._interpreter or lib.TfLiteInterpreterAllocateTensors(self._interpreter):
            self.close()
            raise RuntimeError(f"TensorFlow Lite cannot run {self._path.decode()}")
        self._input = lib.TfLiteInterpreterGetInputTensor(self._interpreter, 0)
        self._output = lib.TfLiteInterpreterGetOutputTensor(self._interpreter, 0)
        self.stride = int(lib.TfLiteTensorDim(self._input, 1))
        quant_in = lib.TfLiteTensorQuantizationParams(self._input)
        quant_out = lib.TfLiteTensorQuantizationParams(self._output)
        self._in_scale, self._in_zero = float(quant_in.scale), int(quant_in.zero_point)
        self._out_scale, self._out_zero = float(quant_out.scale), int(quant_out.zero_point)
        in_type = int(lib.TfLiteTensorType(self._input))
        out_type = int(lib.TfLiteTensorType(self._output))
        if in_type not in _ARRAY_CODES or out_type not in _ARRAY_CODES:
            self.close()
            raise ValueError(
                f"unsupported quantized tensor types (input {in_type}, output {out_type}); "
                "microWakeWord models are int8 or uint8"
            )
        self._in_code, self._in_limits = _ARRAY_CODES[in_type], _LIMITS[in_type]
        self._out_code = _ARRAY_CODES[out_type]
        self._out_buffer = ctypes.create_string_buffer(lib.TfLiteTensorByteSize(self._output))

    def process_streaming(self, features: list[float]) -> bool:
        """One feature frame in; True when the mean probability is above the cutoff."""
        return self.process_streaming_prob(features) > self.probability_cutoff

    def process_streaming_prob(self, features: list[float]) -> float:
        """One feature frame in; the mean probability over the sliding window (0.0 until
        the window is full), as pymicro-wakeword computes it."""
        self._features += features
        if len(self._features) < self.stride * len(features):
            return 0.0
        scale, zero = self._in_scale, self._in_zero
        # numpy's np.round(x / scale + zero).astype(int8): round half to even, as round().
        values = [round(value / scale + zero) for value in self._features]
        try:
            quantized = array(self._in_code, values)
        except OverflowError:  # beyond the type's range: clipped
            low, high = self._in_limits
            quantized = array(self._in_code, [min(high, max(low, v)) for v in values])
        self._features = []
        lib = self._lib
        address, _ = quantized.buffer_info()
        lib.TfLiteTensorCopyFromBuffer(self._input, address, len(quantized))
        lib.TfLiteInterpreterInvoke(self._interpreter)
        lib.TfLiteTensorCopyToBuffer(self._output, self._out_buffer, len(self._out_buffer))
        output = array(self._out_code, self._out_buffer.raw)
        # (output.astype(float32) - zero) * scale, in float32 as numpy does it.
        self._probabilities.append(_float32((output[0] - self._out_zero) * self._out_scale))
        if len(self._probabilities) < self.sliding_window_size:
            return 0.0
        return statistics.mean(self._probabilities)

    def reset(self) -> None:
        """Forget everything heard (TensorFlow Lite keeps the model's state: load it anew)."""
        self._features = []
        self._probabilities.clear()
        self.close()
        self._load()

    def close(self) -> None:
        if self._interpreter:
            self._lib.TfLiteInterpreterDelete(self._interpreter)
            self._interpreter = None
        if self._model:
            self._lib.TfLiteModelDelete(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()


class Features:
    """pymicro-features' frontend over a stream: 16 kHz mono s16le in, one feature frame
    (a list of floats) per 10 ms out."""

    def __init__(self) -> None:
        from micro_features_cpp import create_frontend

        self._frontend = create_frontend()
        self._buffer = b""

    def process_streaming(self, audio: bytes) -> Iterator[list[float]]:
        from micro_features_cpp import process_samples

        buffer = self._buffer + audio if self._buffer else audio
        at = 0
        while at + FEATURE_CHUNK_BYTES <= len(buffer):
            features, samples_read = process_samples(
                self._frontend, buffer[at : at + FEATURE_CHUNK_BYTES]
            )
            at += samples_read * 2
            if features:
                yield features
        self._buffer = buffer[at:]

    def reset(self) -> None:
        from micro_features_cpp import reset_frontend

        reset_frontend(self._frontend)
        self._buffer = b""
