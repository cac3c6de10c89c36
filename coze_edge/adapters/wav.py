"""
WAV files as PCM in the format asked for: any common WAV (integer or float samples, plain
or WAVE_FORMAT_EXTENSIBLE, any rate and channel count) read as s16le at a given rate and
channel count (the file microphone, tests, scripts).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from coze_edge.adapters.resample import resample
from coze_edge.core.audio import AudioFormat

if TYPE_CHECKING:  # imported where it is used (core/audio.py says why)
    from coze_edge.adapters.resample import Samples

WAVE_FORMAT_PCM: Final = 0x0001
WAVE_FORMAT_IEEE_FLOAT: Final = 0x0003
_WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
_SAMPLE_BITS: Final = {WAVE_FORMAT_PCM: (8, 16, 24, 32), WAVE_FORMAT_IEEE_FLOAT: (32, 64)}
"""The encodings read, and the sample sizes read in each."""
_TAG_NAMES: Final = {0x0002: "ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0055: "MP3"}


class WavFormatError(ValueError):
    """A file is not a WAV file coze_edge can read; the message names the file and why."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a WAV file's ``fmt `` chunk says, and where its samples are."""

    encoding: int
    """WAVE_FORMAT_PCM or WAVE_FORMAT_IEEE_FLOAT (after unwrapping WAVE_FORMAT_EXTENSIBLE)."""

    channels: int
    rate: int
    bits: int
    data: memoryview


def read_wav_as(path: Path, fmt: AudioFormat) -> bytes:
    """
    The audio of the WAV file at ``path`` as s16le in ``fmt`` (rate and channels).

    Reads PCM integer (8, 16, 24, 32-bit) and float (32, 64-bit) WAVs, plain or
    WAVE_FORMAT_EXTENSIBLE, any rate and channel count. Several channels become mono by
    averaging; mono becomes several by copying. Raises WavFormatError naming the file and
    the problem; OSError if the file cannot be read.
    """
    import numpy as np

    if fmt.sample_width != 2:
        raise ValueError(f"read_wav_as produces 16-bit samples, not {8 * fmt.sample_width}-bit")
    info = parse_wav(path.read_bytes(), name=str(path))
    if info.channels != fmt.channels and 1 not in (info.channels, fmt.channels):
        raise WavFormatError(f"{path}: cannot convert {info.channels} channels to {fmt.channels}")
    s16 = (info.encoding, info.bits) == (WAVE_FORMAT_PCM, 16)
    if s16 and (info.channels, info.rate) == (fmt.channels, fmt.rate):
        return bytes(info.data)  # already in the wanted format: byte for byte
    samples = _decode(info)  # shape (frames, channels), floats in [-1, 1]
    if info.channels != fmt.channels:
        mono = samples.mean(axis=1, keepdims=True)
        samples = np.repeat(mono, fmt.channels, axis=1) if fmt.channels > 1 else mono
    if info.rate != fmt.rate and len(samples):
        samples = resample(samples, info.rate, fmt.rate)
    scaled = np.clip(np.rint(samples * 32768.0), -32768, 32767)
    return bytes(scaled.astype("<i2").tobytes())


CHECK_BYTES: Final = 1 << 20
"""How much of a WAV file :func:`wav_problem` reads: its header, and the start of its samples."""


def wav_problem(path: Path) -> str | None:
    """Why the file at ``path`` cannot be read as a WAV file, or None if it can. Only the
    first :data:`CHECK_BYTES` are read, so a long recording is checked at once."""
    try:
        with path.open("rb") as file:
            head = file.read(CHECK_BYTES)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    try:
        parse_wav(head, name=str(path))
    except WavFormatError as exc:
        return str(exc)
    return None


def parse_wav(raw: bytes, *, name: str = "<bytes>") -> WavInfo:
    """Find and check the ``fmt `` and ``data`` chunks of a RIFF/WAVE file."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise WavFormatError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    view = memoryview(raw)
    fmt_chunk: bytes | None = None
    data: memoryview | None = None
    offset = 12
    while offset + 8 <= len(raw):
        chunk_id = raw[offset : offset + 4]
        (size,) = struct.unpack_from("<I", raw, offset + 4)
        start = offset + 8
        end = min(start + size, len(raw))  # a WAV written by a stream may claim too much
        if chunk_id == b"fmt ":
            fmt_chunk = raw[start:end]
        elif chunk_id == b"data":
            data = view[start:end]
            if fmt_chunk is not None:
                break
        offset = start + size + (size & 1)  # chunks are padded to an even size
    if fmt_chunk is None or len(fmt_chunk) < 16:
        raise WavFormatError(f"{name}: WAV file without a valid 'fmt ' chunk")
    if data is None:
        raise WavFormatError(f"{name}: WAV file without a 'data' chunk")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt_chunk)
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt_chunk) < 26:
            raise WavFormatError(f"{name}: truncated WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk")
        (tag,) = struct.unpack_from("<H", fmt_chunk, 24)  # first two bytes of the sub-format
    if tag not in _SAMPLE_BITS:
        label = _TAG_NAMES.get(tag, "compressed audio")
        raise WavFormatError(
            f"{name}: {label} (format tag 0x{tag:04x}) is not supported; "
            "convert it to PCM, e.g. `sox in.wav -e signed-integer -b 16 out.wav`"
        )
    if bits not in _SAMPLE_BITS[tag]:
        kind = "integer" if tag == WAVE_FORMAT_PCM else "float"
        raise WavFormatError(f"{name}: {bits}-bit {kind} samples are not supported")
    if channels < 1 or rate < 1:
        raise WavFormatError(f"{name}: {channels} channel(s) at {rate} Hz is not audio")
    if block_align != channels * bits // 8:
        raise WavFormatError(
            f"{name}: block size {block_align} does not match {channels} x {bits}-bit samples"
        )
    whole = len(data) - len(data) % block_align  # ignore a torn last frame
    return WavInfo(tag, channels, rate, bits, data[:whole])


def _decode(info: WavInfo) -> Samples:
    """Samples as floats in [-1, 1], shape (frames, channels)."""
    import numpy as np

    data = info.data
    values: Samples
    if info.encoding == WAVE_FORMAT_IEEE_FLOAT:
        floats = np.frombuffer(data, dtype="<f4" if info.bits == 32 else "<f8")
        values = np.clip(floats.astype(np.float64), -1.0, 1.0)
    elif info.bits == 8:  # 8-bit WAV is unsigned, centred on 128
        values = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128) / 128
    elif info.bits == 16:
        values = np.frombuffer(data, dtype="<i2").astype(np.float64) / (1 << 15)
    elif info.bits == 24:
        triples = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)  # sign-extend
        values = ints.astype(np.float64) / (1 << 23)
    else:
        values = np.frombuffer(data, dtype="<i4").astype(np.float64) / (1 << 31)
    return values.reshape(-1, info.channels)
