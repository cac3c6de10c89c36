"""
``coze-edge devices --test``: set up the microphone and speaker with nothing else.

It records a few seconds with a live level meter, plays them back, plays a rising tone
while listening for it, and reports the peak, speech level and noise floor, clipping, and
whether the speaker's sound reaches the microphone (the echo path); then it suggests
``vad.aggressiveness`` and ``audio.input_gain_db``. The judging is ``core.levels``'; this
module opens the devices (PortAudio, as the daemon does) and talks to the person.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from coze_edge.adapters.sound_devices import (
    SoundDeviceMicrophone,
    SoundDeviceSpeaker,
    find_device,
    list_devices,
)
from coze_edge.adapters.vad_webrtc import WebrtcVad
from coze_edge.core.audio import CAPTURE, rms
from coze_edge.core.hardware import recognise, recommend
from coze_edge.core.levels import (
    MAX_ECHO_DELAY_MS,
    Advice,
    EchoPath,
    Levels,
    advise,
    dbfs,
    find_echo,
    measure,
    quiet_frames,
    rising_tone,
)

RATE = CAPTURE.rate
"""Everything runs at the daemon's capture rate: the recording plays back as it was heard."""
SETTLE_S = 0.3
"""Audio right after the streams open is not judged (devices and servers settle)."""
METER_MS = 100
METER_BAR = 30
METER_FLOOR_DBFS = -60.0
MIN_QUIET_FRAMES = 10
"""Fewer pauses (20 ms frames) than this say nothing about what the VAD makes of noise."""


@dataclass(frozen=True, slots=True)
class CheckSettings:
    input_device: str | int | None = None
    """None: the recommended one (``coze-edge devices``)."""
    output_device: str | int | None = None
    channel: int | None = None
    seconds: float = 5.0


class _Capture:
    """Everything the microphone delivers, kept, with a wake-up per block."""

    def __init__(self, microphone: SoundDeviceMicrophone) -> None:
        self._microphone = microphone
        self.audio = bytearray()
        self._grew = asyncio.Event()

    async def run(self) -> None:
        async for block in self._microphone.frames():
            self.audio += block
            self._grew.set()

    async def wait_until(self, size: int) -> None:
        while len(self.audio) < size:
            self._grew.clear()
            await self._grew.wait()


async def run_audio_check(settings: CheckSettings, out: TextIO, *, tty: bool) -> int:
    """The check, talking to ``out`` (a live meter when ``tty``); 0 once it ran through."""
    devices = list_devices(rescan=True)
    chosen = recommend(devices)
    input_spec = settings.input_device
    if input_spec is None and chosen.input is not None and not chosen.input.default:
        input_spec = chosen.input.device.index
    output_spec = settings.output_device
    if output_spec is None and chosen.output is not None and not chosen.output.default:
        output_spec = chosen.output.device.index
    channel = settings.channel
    microphone_device = find_device(input_spec, "input")
    hardware = recognise(microphone_device.name)
    if channel is None and hardware is not None and settings.input_device is None:
        channel = hardware.channel if microphone_device.inputs > 1 else None
    microphone = SoundDeviceMicrophone(input_spec, capture_rate=RATE, block_ms=20, channel=channel)
    speaker = SoundDeviceSpeaker(output_spec, rate=RATE)
    say = _Printer(out)
    async with microphone, speaker:
        assert microphone.device is not None
        assert speaker.device is not None
        say(
            f"Microphone: {microphone.device.name}"
            + (f", channel {channel}" if channel is not None else "")
        )
        say(f"Speaker:    {speaker.device.name}")
        capture = _Capture(microphone)
        async with asyncio.TaskGroup() as tasks:
            task = tasks.create_task(capture.run(), name="capture")
            try:
                await capture.wait_until(CAPTURE.frame_bytes(round(SETTLE_S * 1000)))
                recording = await _record(capture, settings.seconds, say, tty=tty)
                say("Playing it back: you should hear yourself.")
                await _play(speaker, recording)
                say("Playing a rising tone and listening for it (is the speaker heard?) ...")
                echo = await _tone(speaker, capture)
            finally:
                task.cancel()
    levels = measure(recording, RATE)
    advice = advise(levels, _noise_as_speech(recording, levels))
    _report(
        say, levels, echo, advice, hardware_cancels=hardware is not None and hardware.cancels_echo
    )
    return 0


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, line: str = "", *, end: str = "\n") -> None:
        print(line, file=self.out, end=end, flush=True)


async def _record(capture: _Capture, seconds: float, say: _Printer, *, tty: bool) -> bytes:
    say(
        f"Recording {seconds:g} s: speak as you would to the device (count from one to ten) ...",
    )
    start = len(capture.audio)
    end = start + CAPTURE.frame_bytes(round(seconds * 1000))
    step = CAPTURE.frame_bytes(METER_MS)
    shown = start
    second_start, second_peak, second_sum = start, 0.0, 0.0
    while shown < end:
        await capture.wait_until(min(shown + step, end))
        piece = bytes(capture.audio[shown : min(shown + step, end)])
        shown += len(piece)
        level = dbfs(rms(piece))
        peak = _peak(piece)
        if tty:
            filled = round(METER_BAR * max(0.0, 1 - level / METER_FLOOR_DBFS))
            bar = "#" * filled + "." * (METER_BAR - filled)
            say(f"\r  [{bar}] {level:6.1f} dBFS  peak {dbfs(peak):6.1f}", end="")
        else:
            second_peak = max(second_peak, peak)
            second_sum += rms(piece) ** 2 * len(piece)
            if shown - second_start >= CAPTURE.frame_bytes(1000) or shown >= end:
                mean = (second_sum / max(1, shown - second_start)) ** 0.5
                at = (shown - start) / CAPTURE.frame_bytes(1000)
                say(f"  {at:4.1f} s  level {dbfs(mean):6.1f} dBFS  peak {dbfs(second_peak):6.1f}")
                second_start, second_peak, second_sum = shown, 0.0, 0.0
    if tty:
        say()
    return bytes(capture.audio[start:end])


def _peak(pcm: bytes) -> float:
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    return float(np.max(np.abs(samples))) if len(samples) else 0.0


async def _play(speaker: SoundDeviceSpeaker, pcm: bytes) -> None:
    speaker.play_nowait(pcm)
    async with asyncio.timeout(CAPTURE.duration_ms(len(pcm)) / 1000 + 5):
        await speaker.wait_drained()


async def _tone(speaker: SoundDeviceSpeaker, capture: _Capture) -> EchoPath:
    tone = rising_tone(RATE, 1.0)
    start = len(capture.audio)
    await _play(speaker, tone)
    # Until the last of the tone could have come back.
    await capture.wait_until(start + len(tone) + CAPTURE.frame_bytes(MAX_ECHO_DELAY_MS + 300))
    return find_echo(tone, bytes(capture.audio[start:]), RATE)


def _noise_as_speech(recording: bytes, levels: Levels) -> list[float]:
    """For each aggressiveness, the share of the recording's pauses webrtcvad calls speech."""
    pauses = quiet_frames(recording, RATE, levels)
    if len(pauses) < MIN_QUIET_FRAMES:
        return []
    shares = []
    for mode in range(4):
        vad = WebrtcVad(mode, RATE)
        shares.append(sum(vad.is_speech(frame) for frame in pauses) / len(pauses))
    return shares


def _report(
    say: _Printer, levels: Levels, echo: EchoPath, advice: Advice, *, hardware_cancels: bool
) -> None:
    say()
    say("Microphone:")
    say(f"  peak         {levels.peak_dbfs:6.1f} dBFS")
    say(f"  speech       {levels.speech_dbfs:6.1f} dBFS  (the loudest tenth, in 20 ms steps)")
    say(f"  noise floor  {levels.noise_dbfs:6.1f} dBFS  (the quietest tenth: the pauses)")
    if levels.clipped_samples:
        say(
            f"  clipping     {levels.clipped_samples} samples at full scale, in "
            f"{levels.clipped_ms / 1000:.2f} s of {levels.duration_s:.1f} s"
        )
    else:
        say("  clipping     none")
    say("Speaker -> microphone (the echo path):")
    if echo.audible:
        say(
            f"  audible: the tone came back {echo.delay_ms:.0f} ms later at "
            f"{echo.level_dbfs:.0f} dBFS (likeness {echo.likeness:.2f})."
        )
        if hardware_cancels:
            say("  This device cancels its own echo only for what it plays itself.")
        say(
            "  To talk over a reply, the device needs echo cancellation: "
            "pip install 'coze-edge[aec]' (audio.echo_cancellation: auto turns it on)."
        )
    else:
        say(
            f"  not heard (likeness {echo.likeness:.2f}): the microphone does not pick up "
            "the speaker at this volume."
        )
        say("  If you did not hear the tone either, check audio.output_device and the volume.")
    say("Suggested settings (put them in the config file):")
    say("  vad:")
    say(f"    aggressiveness: {advice.aggressiveness}  # {advice.aggressiveness_why}")
    say("  audio:")
    say(f"    input_gain_db: {advice.gain_db:g}  # {advice.gain_why}")
    for warning in advice.warnings:
        say(f"! {warning}")
