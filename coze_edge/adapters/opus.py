"""
Opus for the uplink (``audio.codec: opus``): libopus from the OS (``libopus0``) through
ctypes. Five calls of its C API are all the daemon needs, so no Python binding is pulled
in (the one on PyPI, opuslib, has not been released since 2018 and has no types).

Coze takes one raw Opus packet per ``input_audio_buffer.append`` (no Ogg container), as
coze-js sends it: ``OpusStream`` cuts any PCM into whole frames and encodes each one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass
from typing import Final

from coze_edge.core.audio import FrameSplitter

APPLICATION_VOIP: Final = 2048
SET_BITRATE: Final = 4002
SET_COMPLEXITY: Final = 4010
SET_SIGNAL: Final = 4024
SIGNAL_VOICE: Final = 3001
FRAME_MS: Final = (10, 20, 40, 60)
"""Frame durations this module offers (libopus also has 2.5 and 5 ms, and longer ones)."""
RATES: Final = (8000, 12000, 16000, 24000, 48000)
MAX_PACKET: Final = 1500
INSTALL_HINT: Final = "install libopus (Debian/Raspberry Pi OS: apt install libopus0)"


class OpusUnavailable(OSError):
    """libopus is not installed or does not load."""


class OpusError(ValueError):
    """libopus refused a call (a bad argument, or a corrupt packet to decode)."""


@functools.cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise OpusUnavailable(f"the Opus codec needs libopus: {INSTALL_HINT} ({exc})") from exc
    ptr, i32, c_int = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int
    lib.opus_encoder_create.restype = ptr
    lib.opus_encoder_create.argtypes = [i32, c_int, c_int, ctypes.POINTER(c_int)]
    lib.opus_encode.restype = i32
    lib.opus_encode.argtypes = [ptr, ctypes.c_char_p, c_int, ctypes.c_char_p, i32]
    lib.opus_encoder_destroy.argtypes = [ptr]
    lib.opus_encoder_ctl.restype = c_int  # variadic: the value is passed as a c_int32
    lib.opus_decoder_create.restype = ptr
    lib.opus_decoder_create.argtypes = [i32, c_int, ctypes.POINTER(c_int)]
    lib.opus_decode.restype = c_int
    lib.opus_decode.argtypes = [ptr, ctypes.c_char_p, i32, ctypes.c_char_p, c_int, c_int]
    lib.opus_decoder_destroy.argtypes = [ptr]
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_get_version_string.restype = ctypes.c_char_p
    return lib


def available() -> bool:
    try:
        _lib()
    except OpusUnavailable:
        return False
    return True


def version() -> str:
    """libopus's own version string, e.g. ``libopus 1.3.1``."""
    return bytes(_lib().opus_get_version_string()).decode()


def _check(code: int, what: str) -> int:
    if code < 0:
        message = _lib().opus_strerror(code)
        raise OpusError(f"{what}: {bytes(message).decode() if message else code}")
    return code


def _check_rate(rate: int) -> None:
    if rate not in RATES:
        raise ValueError(f"Opus runs at {', '.join(map(str, RATES))} Hz, not {rate}")


class OpusEncoder:
    """Mono s16le PCM at ``rate`` -> one Opus packet per ``frame_ms`` of audio."""

    def __init__(
        self, rate: int = 16000, *, bitrate: int = 24000, frame_ms: int = 20, complexity: int = 5
    ) -> None:
        _check_rate(rate)
        if frame_ms not in FRAME_MS:
            raise ValueError(f"Opus frames are {', '.join(map(str, FRAME_MS))} ms, not {frame_ms}")
        lib = _lib()
        error = ctypes.c_int()
        self._state = lib.opus_encoder_create(rate, 1, APPLICATION_VOIP, ctypes.byref(error))
        _check(error.value, "opus_encoder_create")
        state = ctypes.c_void_p(self._state)  # variadic, so no argtypes: exact C types
        for request, value, what in (
            (SET_BITRATE, bitrate, "bitrate"),
            (SET_COMPLEXITY, complexity, "complexity"),
            (SET_SIGNAL, SIGNAL_VOICE, "signal"),
        ):
            _check(lib.opus_encoder_ctl(state, ctypes.c_int(request), ctypes.c_int32(value)), what)
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self.frame_bytes = self.frame_samples * 2
        self._out = ctypes.create_string_buffer(MAX_PACKET)

    def encode(self, frame: bytes) -> bytes:
        """One frame of PCM (exactly ``frame_bytes``) -> one packet."""
        if len(frame) != self.frame_bytes:
            raise ValueError(f"an Opus frame is {self.frame_bytes} bytes, got {len(frame)}")
        size = _lib().opus_encode(self._state, frame, self.frame_samples, self._out, MAX_PACKET)
        return self._out.raw[: _check(size, "opus_encode")]

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state:
            _lib().opus_encoder_destroy(state)


class OpusStream:
    """PCM of any length in, packets out; a remainder waits for the next call (or ``end``)."""

    def __init__(self, encoder: OpusEncoder) -> None:
        self._encoder = encoder
        self._frames = FrameSplitter(encoder.frame_bytes)

    def packets(self, pcm: bytes) -> list[bytes]:
        return [self._encoder.encode(frame) for frame in self._frames.push(pcm)]

    def end(self) -> list[bytes]:
        """The remainder, padded with silence to a whole frame (at most one frame late)."""
        waiting = self._frames.pending
        return self.packets(bytes(self._encoder.frame_bytes - waiting)) if waiting else []

    def clear(self) -> None:
        self._frames.clear()


@dataclass(frozen=True, slots=True)
class OpusSettings:
    rate: int = 16000
    bitrate: int = 24000
    frame_ms: int = 20

    def encoder(self) -> OpusEncoder:
        return OpusEncoder(self.rate, bitrate=self.bitrate, frame_ms=self.frame_ms)


class OpusDecoder:
    """Opus packets -> mono s16le PCM at ``rate`` (the simulator's side, and tests)."""

    def __init__(self, rate: int = 16000) -> None:
        _check_rate(rate)
        lib = _lib()
        error = ctypes.c_int()
        self._state = lib.opus_decoder_create(rate, 1, ctypes.byref(error))
        _check(error.value, "opus_decoder_create")
        self._max_samples = rate * 120 // 1000  # the longest packet Opus has
        self._out = ctypes.create_string_buffer(self._max_samples * 2)

    def decode(self, packet: bytes) -> bytes:
        if not packet:
            raise OpusError("opus_decode: an empty packet")
        samples = _lib().opus_decode(
            self._state, packet, len(packet), self._out, self._max_samples, 0
        )
        return self._out.raw[: _check(samples, "opus_decode") * 2]

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state:
            _lib().opus_decoder_destroy(state)
