"""
PortAudio microphone and speaker through ``sounddevice``, and ``coze-edge devices``.

The PortAudio callbacks run on PortAudio's thread: they copy, hand off, and return.
Devices open at the wanted rate when they accept it, else at their own default rate with
soxr resampling in between. A device that is missing, busy or stops delivering raises
``AudioDeviceLost``; the supervisor reopens it after a backoff (re-scanning PortAudio's
device list, so a sound server restart or a re-plugged USB device is found again).
``sounddevice`` is imported here only, so everything else runs without libportaudio.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TextIO

from coze_edge.adapters.resample import StreamResampler, to_mono
from coze_edge.core.audio import apply_gain
from coze_edge.errors import AudioDeviceLost

log = logging.getLogger(__name__)

NO_AUDIO_TIMEOUT_S = 2.0
"""A microphone silent for this long (no callbacks at all) is treated as lost."""


def _sd() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # "PortAudio library not found"
        raise AudioDeviceLost(f"PortAudio is not available ({exc}): install libportaudio2") from exc
    return sounddevice


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool
    default_output: bool


_open_streams = 0
"""Streams this process has open: PortAudio may only be re-initialised when there are none."""


def list_devices(*, rescan: bool = False) -> list[DeviceInfo]:
    sd = _sd()
    if rescan and not _open_streams:
        # PortAudio enumerates devices once per initialisation; re-scan after a loss. Not
        # while a stream is open: terminating PortAudio would silently stop it.
        sd._terminate()
        sd._initialize()
        _release_unused_alsa_plugins()
    default_in, default_out = sd.default.device
    return [
        DeviceInfo(
            index=i,
            name=str(info["name"]),
            inputs=int(info["max_input_channels"]),
            outputs=int(info["max_output_channels"]),
            default_rate=float(info["default_samplerate"]),
            default_input=i == default_in,
            default_output=i == default_out,
        )
        for i, info in enumerate(sd.query_devices())
    ]


def _release_unused_alsa_plugins() -> None:
    """
    To list the devices, PortAudio's ALSA host API opens every PCM the ALSA configuration
    defines, and ALSA keeps each plugin's library loaded afterwards: with
    libasound2-plugins that is a52 (libavcodec, with its codecs and librsvg), jack (libjack,
    libdb), speex, upmix, vdownmix, usb_stream, oss: measured 11 MB of resident memory
    that no stream of ours uses. Freeing ALSA's global configuration unloads the plugins no
    open stream holds (ALSA reads the configuration again at the next open, loading only
    the plugin that one needs). Called only while no stream is open.
    """
    try:
        asound = ctypes.CDLL("libasound.so.2")
    except OSError:
        return  # PortAudio without ALSA (another OS): nothing was loaded
    asound.snd_config_update_free_global()


def find_device(
    spec: str | int | None, kind: Literal["input", "output"], *, rescan: bool = False
) -> DeviceInfo:
    """The device named by ``spec``: an index, a name substring, or None for the default."""
    devices = list_devices(rescan=rescan)
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    if spec is None:
        default = [d for d in usable if (d.default_input if kind == "input" else d.default_output)]
        if default:
            return default[0]
        if usable:
            return usable[0]
        raise AudioDeviceLost(f"no {kind} audio device found")
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        for device in usable:
            if device.index == index:
                return device
        raise AudioDeviceLost(f"no {kind} device with index {index}")
    matches = [d for d in usable if spec.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(repr(d.name) for d in (matches or usable)) or "none"
    if matches:
        raise AudioDeviceLost(f"{kind} device {spec!r} is ambiguous: {names}")
    raise AudioDeviceLost(f"no {kind} device matches {spec!r}; {kind} devices: {names}")


def _opened(stream: Any) -> Any:
    global _open_streams
    _open_streams += 1
    return stream


def _close(stream: Any, what: str) -> None:
    """Close a PortAudio stream; a device already gone may refuse, which changes nothing."""
    global _open_streams
    if stream is None:
        return
    _open_streams -= 1
    try:
        stream.close()
    except Exception as exc:
        log.debug("! closing the %s: %s", what, exc)


def _rate_for(sd: Any, device: DeviceInfo, rate: int, channels: int, kind: str) -> int:
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device.index, samplerate=rate, channels=channels, dtype="int16")
    except Exception:  # PortAudio says no: use the device's own rate and resample
        return int(device.default_rate)
    return rate


class SoundDeviceMicrophone:
    """Capture-format blocks (16 kHz mono s16le by default) from a PortAudio input."""

    def __init__(
        self,
        device: str | int | None,
        *,
        capture_rate: int = 16000,
        block_ms: int = 60,
        channel: int | None = None,
        queue_blocks: int = 32,
    ) -> None:
        self._spec = device
        self._rate = capture_rate
        self._block_ms = block_ms
        self._channel = channel
        self._queue_blocks = queue_blocks
        self._stream: Any = None
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(queue_blocks)
        self._resampler: StreamResampler | None = None
        self._channels = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self.device: DeviceInfo | None = None
        self.overruns = 0
        self.on_capture: Callable[[bytes], bytes] | None = None
        self.captured_at: float | None = None
        self.handoff_ms = 0
        self._held: list[bytes] = []  # PortAudio's thread only: blocks not handed over yet

    async def __aenter__(self) -> Self:
        sd = _sd()
        self._loop = asyncio.get_running_loop()
        device = find_device(self._spec, "input", rescan=True)
        # A mic HAT with several channels: open them all, then pick one or average them.
        self._channels = 1 if device.inputs == 1 or self._channel is None else device.inputs
        rate = _rate_for(sd, device, self._rate, self._channels, "input")
        if rate != self._rate:
            self._resampler = StreamResampler(rate, self._rate)
        try:
            self._stream = _opened(
                sd.RawInputStream(
                    device=device.index,
                    samplerate=rate,
                    channels=self._channels,
                    dtype="int16",
                    blocksize=rate * self._block_ms // 1000,
                    callback=self._on_audio,
                    latency="low",
                )
            )
            self._stream.start()
        except Exception as exc:  # sounddevice.PortAudioError and friends
            stream, self._stream = self._stream, None
            _close(stream, "microphone")
            raise AudioDeviceLost(f"cannot open microphone {device.name!r}: {exc}") from exc
        self.device = device
        log.info("microphone: %s at %d Hz, %d channel(s)", device.name, rate, self._channels)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        stream, self._stream = self._stream, None
        _close(stream, "microphone")

    def _on_audio(self, indata: Any, frames: int, when: Any, status: Any) -> None:
        # PortAudio's thread: copy (indata is only valid during this call) and hand off,
        # or hold it back while handoff_ms allows: waking the loop costs far more than
        # anything done with a block while the device waits for speech.
        if status and status.input_overflow:
            self.overruns += 1
        held = self._held
        held.append(bytes(indata))
        if len(held) * self._block_ms < self.handoff_ms:
            return
        self._held = []
        assert self._loop is not None
        block = held[0] if len(held) == 1 else b"".join(held)
        self._loop.call_soon_threadsafe(self._put, block, time.monotonic())

    def _put(self, block: bytes, captured_at: float) -> None:
        # The loop's thread, in capture order: convert and clean before anything is dropped.
        if self._channels > 1:
            block = to_mono(block, self._channels, pick=self._channel)
        if self._resampler is not None:
            block = self._resampler.process(block)
        if not block:
            return
        if self.on_capture is not None:
            block = self.on_capture(block)
        if self._queue.full():
            self._queue.get_nowait()  # fresh audio is worth more than stale
            self.overruns += 1
            if self.overruns in (1, 10, 100) or self.overruns % 1000 == 0:
                log.warning("! microphone overruns: %d blocks dropped", self.overruns)
        self._queue.put_nowait((captured_at, block))

    async def frames(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(NO_AUDIO_TIMEOUT_S):
                    self.captured_at, block = await self._queue.get()
            except TimeoutError:
                name = self.device.name if self.device else self._spec
                raise AudioDeviceLost(
                    f"microphone {name!r} delivered nothing for {NO_AUDIO_TIMEOUT_S:.0f} s"
                ) from None
            yield block


class SoundDeviceSpeaker:
    """Mono s16le at ``rate`` to a PortAudio output, through a jitter buffer."""

    def __init__(
        self,
        device: str | int | None,
        *,
        rate: int = 24000,
        block_ms: int = 20,
        prebuffer_ms: int = 100,
    ) -> None:
        self._spec = device
        self.rate = rate
        self._block_ms = block_ms
        self._prebuffer_ms = prebuffer_ms
        self._device_rate = rate
        self._resampler: StreamResampler | None = None
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._started = False  # this burst passed its pre-buffer
        self._first_byte_at = 0.0
        self._volume = 100
        self._played_bytes = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._room = asyncio.Event()
        self._room_below: int | None = None  # bytes; _on_output sets _room once fewer are left
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: str | None = None
        self.underruns = 0
        self.device: DeviceInfo | None = None
        self.burst_started_at: float | None = None
        self.on_render: Callable[[bytes, int], None] | None = None

    async def __aenter__(self) -> Self:
        sd = _sd()
        self._loop = asyncio.get_running_loop()
        device = find_device(self._spec, "output", rescan=True)
        self._device_rate = _rate_for(sd, device, self.rate, 1, "output")
        if self._device_rate != self.rate:
            self._resampler = StreamResampler(self.rate, self._device_rate)
        try:
            self._stream = _opened(
                sd.RawOutputStream(
                    device=device.index,
                    samplerate=self._device_rate,
                    channels=1,
                    dtype="int16",
                    blocksize=self._device_rate * self._block_ms // 1000,
                    callback=self._on_output,
                    latency="low",
                    finished_callback=self._on_finished,
                )
            )
            self._stream.start()
        except Exception as exc:
            stream, self._stream = self._stream, None
            _close(stream, "speaker")
            raise AudioDeviceLost(f"cannot open speaker {device.name!r}: {exc}") from exc
        self.device = device
        log.info("speaker: %s at %d Hz", device.name, self._device_rate)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        stream, self._stream = self._stream, None
        _close(stream, "speaker")
        self._room.set()

    def _on_finished(self) -> None:
        if self._stream is not None and self._loop is not None:
            self._lost = "the output stream stopped"
            self._loop.call_soon_threadsafe(self._drained.set)
            self._loop.call_soon_threadsafe(self._room.set)

    def _on_output(self, outdata: Any, frames: int, when: Any, status: Any) -> None:
        # PortAudio's thread: take what is buffered, fill the rest with silence.
        need = frames * 2
        now = time.monotonic()
        if status and status.output_underflow:
            self.underruns += 1
        with self._lock:
            available = len(self._buffer)
            if available and not self._started:
                waited = now - self._first_byte_at if self._first_byte_at else 0.0
                enough = available >= self._device_rate * 2 * self._prebuffer_ms // 1000
                if enough or waited * 1000 >= self._prebuffer_ms:
                    self._started = True
                    self.burst_started_at = now
                elif not self._first_byte_at:
                    self._first_byte_at = now
            if self._started and available:
                chunk = bytes(self._buffer[:need])
                del self._buffer[:need]
                self._played_bytes += len(chunk)
            else:
                chunk = b""
            emptied = self._started and not self._buffer
            if emptied:
                self._started = False
                self._first_byte_at = 0.0
            room = self._room_below is not None and len(self._buffer) < self._room_below
            if room:
                self._room_below = None
        if len(chunk) < need:
            outdata[: len(chunk)] = chunk
            outdata[len(chunk) :] = b"\x00" * (need - len(chunk))
        else:
            outdata[:] = chunk
        if self.on_render is not None and self._loop is not None:
            # Silence too: the echo canceller pairs render and capture audio by their order,
            # so a render stream with gaps would misalign it after every pause.
            self._loop.call_soon_threadsafe(self.on_render, bytes(outdata), self._device_rate)
        if emptied and self._loop is not None:
            self._loop.call_soon_threadsafe(self._drained.set)
        if room and self._loop is not None:
            self._loop.call_soon_threadsafe(self._room.set)

    def _check(self) -> None:
        if self._lost is not None:
            name = self.device.name if self.device else self._spec
            raise AudioDeviceLost(f"speaker {name!r}: {self._lost}")

    def play_nowait(self, pcm: bytes) -> None:
        self._check()
        pcm = apply_gain(pcm, self._volume)
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        if not pcm:
            return
        with self._lock:
            self._buffer += pcm
        self._drained.clear()

    def flush(self) -> None:
        with self._lock:
            self._buffer.clear()
            self._started = False
            self._first_byte_at = 0.0
            self._room_below = None
        self._drained.set()
        self._room.set()

    async def wait_drained(self) -> None:
        await self._drained.wait()
        self._check()

    async def wait_queued_below(self, ms: float) -> None:
        limit = round(ms * self._device_rate * 2 / 1000)
        while self._lost is None and self._stream is not None:
            with self._lock:
                if len(self._buffer) < limit:
                    return
                self._room_below = limit
                self._room.clear()
            await self._room.wait()

    def set_volume(self, percent: int) -> None:
        self._volume = max(0, min(100, percent))

    @property
    def playing(self) -> bool:
        with self._lock:
            return bool(self._buffer)

    def played_ms(self) -> float:
        return self._played_bytes / (2 * self._device_rate) * 1000


def print_devices(out: TextIO) -> int:
    """``coze-edge devices``."""
    try:
        devices = list_devices()
    except AudioDeviceLost as exc:
        print(f"coze-edge devices: {exc}", file=out)
        return 1
    print(f"{'index':>5}  {'in':>3} {'out':>3} {'rate':>6}  name", file=out)
    for d in devices:
        marks = ("  (default input)" if d.default_input else "") + (
            "  (default output)" if d.default_output else ""
        )
        print(
            f"{d.index:>5}  {d.inputs:>3} {d.outputs:>3} {d.default_rate:>6.0f}  {d.name}{marks}",
            file=out,
        )
    print(
        "Put a name (or a unique part of it) or an index in audio.input_device / "
        "audio.output_device.",
        file=out,
    )
    return 0
