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
from types import TracebackType
from typing import Any, Literal, Self, TextIO

from coze_edge.adapters.resample import StreamResampler, to_mono
from coze_edge.adapters.sound_system import sound_facts
from coze_edge.core.audio import DUCK_RAMP_MS, Ducking, amplify, apply_gain
from coze_edge.core.hardware import (
    DeviceInfo,
    Recommendation,
    SoundFacts,
    hints,
    recognise,
    recommend,
)
from coze_edge.errors import AudioDeviceLost, ConfigError

log = logging.getLogger(__name__)

NO_AUDIO_TIMEOUT_S = 2.0
"""A running microphone silent for this long (no callbacks at all) is treated as lost."""

FIRST_AUDIO_TIMEOUT_S = 5.0
"""The same for the first block after the stream opened, which a sound server may serve
late: a PulseAudio null sink started a moment before first renders a whole 2 s block, and
a capture stream opened then got its first callback 1.74 to 1.98 s after the open (7 of 7
opens within a second of the server's start; 64 to 68 ms once it had run for 3 s). That
is what a device booting with the sound server meets, and it used to end the first
conversation with a 2 s "delivered nothing" error."""

MAX_OPEN_CHANNELS = 16
"""A device claiming more input channels than this is a sound server's plugin (``pulse``
and ``default`` claim 32 or 128 and make up the ones the source lacks): only as many as
reach the chosen channel are opened from it, two at least."""


def _sd() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # "PortAudio library not found"
        raise AudioDeviceLost(f"PortAudio is not available ({exc}): install libportaudio2") from exc
    return sounddevice


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
        gain_db: float = 0.0,
        queue_blocks: int = 32,
    ) -> None:
        """``channel``: the one to use (0-based), None = the first, or what the device or
        sound server makes of them all; ``gain_db`` is applied before anything else."""
        self._spec = device
        self._rate = capture_rate
        self._block_ms = block_ms
        self._channel = channel
        self._gain_db = gain_db
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
        # A mic HAT with several channels: open them all, then pick one. Without a channel,
        # one is opened: PortAudio gives a card's first, a sound server its mix of all.
        self._channels = 1
        if self._channel is not None:
            if self._channel >= device.inputs:
                raise ConfigError(
                    [
                        (
                            "audio.input_channel",
                            f"{device.name!r} has {device.inputs} input channel(s), so 0 to "
                            f"{device.inputs - 1}, not {self._channel}",
                        )
                    ]
                )
            self._channels = (
                device.inputs
                if device.inputs <= MAX_OPEN_CHANNELS
                else max(self._channel + 1, 2)  # one would be the server's mix of all
            )
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
        log.info(
            "microphone: %s at %d Hz, %s",
            device.name,
            rate,
            f"channel {self._channel} of {self._channels}"
            if self._channel is not None
            else "1 channel",
        )
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
        block = amplify(block, self._gain_db)
        if self.on_capture is not None:
            block = self.on_capture(block)
        if self._queue.full():
            self._queue.get_nowait()  # fresh audio is worth more than stale
            self.overruns += 1
            if self.overruns in (1, 10, 100) or self.overruns % 1000 == 0:
                log.warning("! microphone overruns: %d blocks dropped", self.overruns)
        self._queue.put_nowait((captured_at, block))

    async def frames(self) -> AsyncIterator[bytes]:
        timeout = FIRST_AUDIO_TIMEOUT_S
        while True:
            try:
                async with asyncio.timeout(timeout):
                    self.captured_at, block = await self._queue.get()
            except TimeoutError:
                name = self.device.name if self.device else self._spec
                raise AudioDeviceLost(
                    f"microphone {name!r} delivered nothing for {timeout:g} s"
                ) from None
            timeout = NO_AUDIO_TIMEOUT_S
            yield block


class SoundDeviceSpeaker:
    """
    Mono s16le at ``rate`` to a PortAudio output, through a jitter buffer.

    By default the output stream stays open from ``__aenter__`` to ``__aexit__``, fed with
    silence between sounds: the sound card and any sound server in between never go idle,
    so nothing of a reply's start is lost to a device waking up, and the echo canceller
    (``on_render``) gets an unbroken reference. ``keep_open_s`` closes the stream after
    that long without sound instead (less CPU while idle, and the card may sleep), and
    opens it again for the next sound; ``warmup_ms`` of silence then go first, so that a
    device that wakes up slowly loses silence, not the reply. With an echo canceller
    attached, the stream stays open whatever ``keep_open_s`` says.
    """

    def __init__(
        self,
        device: str | int | None,
        *,
        rate: int = 24000,
        block_ms: int = 20,
        prebuffer_ms: int = 100,
        keep_open_s: float | None = None,
        warmup_ms: int = 0,
        idle_block_ms: int | None = None,
    ) -> None:
        self._spec = device
        self.rate = rate
        self._block_ms = block_ms
        self._prebuffer_ms = prebuffer_ms
        self._keep_open_s = keep_open_s
        self._warmup_ms = warmup_ms
        self._idle_block_ms = idle_block_ms
        self._idle = False  # the driver says the device only waits
        self._coarse = False  # the open stream runs on idle_block_ms blocks
        self._device_rate = rate
        self._resampler: StreamResampler | None = None
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._started = False  # this burst passed its pre-buffer
        self._first_byte_at = 0.0
        self._warmup_left = 0  # frames of silence still to play before any sound
        self._volume = 100
        self._ducking = Ducking(rate * DUCK_RAMP_MS // 1000)  # applied on PortAudio's thread
        self._played_bytes = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._room = asyncio.Event()
        self._room_below: int | None = None  # bytes; _on_output sets _room once fewer are left
        self._stream: Any = None
        self._generation = 0  # which opening of the stream is the current one
        self._closing: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: str | None = None
        self.underruns = 0
        self.opened = 0
        """How often the output stream was opened (1 while it is kept open)."""
        self.device: DeviceInfo | None = None
        self.burst_started_at: float | None = None
        self.ducked_at: float | None = None
        self.on_render: Callable[[bytes, int], None] | None = None

    async def __aenter__(self) -> Self:
        sd = _sd()
        self._loop = asyncio.get_running_loop()
        device = find_device(self._spec, "output", rescan=True)
        self._device_rate = _rate_for(sd, device, self.rate, 1, "output")
        if self._device_rate != self.rate:
            self._resampler = StreamResampler(self.rate, self._device_rate)
        if self._keep_open_s is not None and self.on_render is not None:
            log.info(
                "audio.output_keep_open_s ignored: the echo canceller needs the speaker's "
                "stream open all the time"
            )
            self._keep_open_s = None
        self._open(device)
        log.info(
            "speaker: %s at %d Hz, %s",
            device.name,
            self._device_rate,
            "kept open"
            if self._keep_open_s is None
            else f"closed after {self._keep_open_s:g} s of silence",
        )
        self._close_later()
        return self

    def _open(self, device: DeviceInfo, *, coarse: bool = False) -> None:
        sd = _sd()
        block_ms = self._idle_block_ms if coarse and self._idle_block_ms else self._block_ms
        self._generation += 1
        generation = self._generation
        with self._lock:
            self._warmup_left = self._device_rate * self._warmup_ms // 1000
        try:
            self._stream = _opened(
                sd.RawOutputStream(
                    device=device.index,
                    samplerate=self._device_rate,
                    channels=1,
                    dtype="int16",
                    blocksize=self._device_rate * block_ms // 1000,
                    callback=self._on_output,
                    latency="low",
                    finished_callback=lambda: self._on_finished(generation),
                )
            )
            self._stream.start()
        except Exception as exc:
            stream, self._stream = self._stream, None
            _close(stream, "speaker")
            raise AudioDeviceLost(f"cannot open speaker {device.name!r}: {exc}") from exc
        self.device = device
        self.opened += 1
        self._coarse = block_ms != self._block_ms

    @property
    def stream_block_ms(self) -> int | None:
        """The block length of the open stream (None while it is closed)."""
        if self._stream is None:
            return None
        return self._idle_block_ms if self._coarse else self._block_ms

    @property
    def idle(self) -> bool:
        return self._idle

    @idle.setter
    def idle(self, idle: bool) -> None:
        """
        With ``idle_block_ms`` and a stream kept open (no ``keep_open_s``, no echo
        canceller): while the device only waits, the stream runs on blocks that long, fed
        with silence as before, so the card never sleeps, at a fraction of the wake-ups
        (measured on PulseAudio: 0.0007 CPU s/s on 100 ms blocks against 0.008 on 20 ms).
        When a turn starts it is opened again on ``block_ms`` blocks, long before any reply
        (at least the end silence): replies, flushes and barge-in meet the usual stream.
        The switch waits until nothing is queued, so an earcon plays whole on one stream.
        """
        if idle == self._idle:
            return
        self._idle = idle
        self._switch_blocks()

    def _switch_blocks(self) -> None:
        """Open the stream again on the blocks ``idle`` wants, once nothing is queued."""
        if (
            self._idle_block_ms is None
            or self._keep_open_s is not None
            or self.on_render is not None
            or self._idle == self._coarse
            or self._stream is None
            or self.device is None
            or self._lost is not None  # a lost device is reported, not reopened here
        ):
            return
        with self._lock:
            if self._buffer or self._warmup_left > 0:
                return  # again when it has drained (_on_output)
        stream, self._stream = self._stream, None
        _close(stream, "speaker")  # what PortAudio still holds is silence
        self._open(self.device, coarse=self._idle)
        log.debug(
            "= speaker on %d ms blocks", self._idle_block_ms if self._idle else self._block_ms
        )

    def _close_later(self) -> None:
        """With ``keep_open_s``: close the stream once it has been silent that long."""
        if self._keep_open_s is None or self._loop is None:
            return
        if self._closing is not None:
            self._closing.cancel()
        self._closing = self._loop.call_later(self._keep_open_s, self._close_if_silent)

    def _close_if_silent(self) -> None:
        self._closing = None
        if self._stream is None:
            return
        with self._lock:
            busy = bool(self._buffer) or self._warmup_left > 0
        if busy:  # a stream that has not even played its warm-up yet, or new sound
            self._close_later()
            return
        stream, self._stream = self._stream, None
        _close(stream, "speaker")  # PortAudio drops what it still holds: silence
        log.debug("= speaker stream closed after %g s of silence", self._keep_open_s)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None
        stream, self._stream = self._stream, None
        _close(stream, "speaker")
        self._room.set()

    def _on_finished(self, generation: int) -> None:
        # PortAudio's thread. A stream closed on purpose (or replaced) is not a loss.
        if generation == self._generation and self._stream is not None and self._loop:
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
            warming = self._warmup_left > 0
            if warming:  # a freshly opened stream: silence first, the sound after it
                self._warmup_left = max(0, self._warmup_left - frames)
            available = 0 if warming else len(self._buffer)
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
        gain = self._ducking.gain
        chunk = self._ducking.apply(chunk)
        if gain == 1.0 and self._ducking.gain < 1.0:
            self.ducked_at = now
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
            self._loop.call_soon_threadsafe(self._close_later)
            if self._idle != self._coarse:
                self._loop.call_soon_threadsafe(self._switch_blocks)
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
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None
        if self._stream is None and self.device is not None:
            # Closed after a silence (keep_open_s): open it again, by the same name, and
            # play the warm-up first. A few milliseconds on the loop, once per reply.
            self._open(find_device(self._spec, "output"))
            log.debug("= speaker stream opened again for sound")
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
        self._close_later()

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

    @property
    def stream_open(self) -> bool:
        """The output stream is open (always, unless ``keep_open_s`` closed it)."""
        return self._stream is not None

    def set_volume(self, percent: int) -> None:
        self._volume = max(0, min(100, percent))

    def duck(self, db: float) -> None:
        self._ducking.set_db(db)  # one float: the callback reads it once per block

    @property
    def playing(self) -> bool:
        with self._lock:
            return bool(self._buffer)

    def played_ms(self) -> float:
        return self._played_bytes / (2 * self._device_rate) * 1000


def print_devices(out: TextIO, *, facts: SoundFacts | None = None) -> int:
    """
    ``coze-edge devices``: every device with the known voice hardware, the defaults and the
    recommended ones marked; the config lines for the recommended ones; what to check when
    there is none (or a known card PortAudio cannot open). 1 when there is no device.
    """
    try:
        devices = list_devices()
    except AudioDeviceLost as exc:
        print(f"coze-edge devices: {exc}", file=out)
        return 1
    chosen = recommend(devices)
    checks = hints(devices, facts or sound_facts())
    if devices:
        print(f"{'index':>5}  {'in':>3} {'out':>3} {'rate':>6}  name", file=out)
        for d in devices:
            marks = _marks(d, chosen)
            print(
                f"{d.index:>5}  {d.inputs:>3} {d.outputs:>3} {d.default_rate:>6.0f}  {d.name}"
                + (f"  ({marks})" if marks else ""),
                file=out,
            )
        _print_recommendation(chosen, devices, out)
    else:
        print("coze-edge devices: PortAudio finds no audio device.", file=out)
    if checks:
        print("\nCheck:", file=out)
        for line in checks:
            print(f"  - {line}", file=out)
    return 0 if devices else 1


def _marks(device: DeviceInfo, chosen: Recommendation) -> str:
    words = []
    known = recognise(device.name)
    recommended = [
        kind
        for kind, pick in (("input", chosen.input), ("output", chosen.output))
        if pick is not None and pick.device == device
    ]
    if recommended:
        words.append("recommended " + " and ".join(recommended))
    defaults = [
        kind
        for kind, default in (("input", device.default_input), ("output", device.default_output))
        if default
    ]
    if defaults:
        words.append("default " + " and ".join(defaults))
    text = ", ".join(words)
    if known is not None:
        text = f"{known.label}; {text}" if text else known.label
    return text


def _print_recommendation(chosen: Recommendation, devices: list[DeviceInfo], out: TextIO) -> None:
    print("", file=out)
    for kind, pick in (("microphone", chosen.input), ("speaker", chosen.output)):
        if pick is not None:
            print(f"Recommended {kind}: {pick.device.name} ({pick.why})", file=out)
    print("Put in the config file (coze-edge check-config checks it):", file=out)
    for line in chosen.config_lines(devices):
        print(f"  {line}", file=out)
    setups = []
    for pick in (chosen.input, chosen.output):
        if pick is not None and pick.hardware is not None and pick.hardware not in setups:
            setups.append(pick.hardware)
    for hardware in setups:
        print(f"{hardware.label}: {hardware.setup}.", file=out)
    print(
        "Then try them: coze-edge devices --test (records, plays back, measures the levels "
        "and the echo, and suggests the settings).",
        file=out,
    )
