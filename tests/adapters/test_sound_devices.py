"""Real PortAudio streams through PulseAudio null sinks: capture, playback, flush, loss."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from coze_edge.adapters import sound_devices
from coze_edge.adapters.sound_devices import (
    SoundDeviceMicrophone,
    SoundDeviceSpeaker,
    find_device,
    print_devices,
)
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE, AudioFormat, rms
from coze_edge.errors import AudioDeviceLost, ConfigError
from tests.support.data import DATA
from tests.support.pulseaudio import PulseEnv, Recording, pulse_server


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseEnv]:
    """One server for all of this module's tests (conftest's ``pulse`` starts one per test);
    the test that kills it starts it again for the rest."""
    with pulse_server(tmp_path_factory.mktemp("pulse")) as env:
        yield env


def tone(seconds: float, rate: int = 24000, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12000).astype("<i2").tobytes()


def energy_per_10ms(raw: bytes, rate: int = 24000) -> list[float]:
    samples = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float64)
    step = rate // 100
    return [
        float(np.sqrt(np.mean(samples[i : i + step] ** 2)))
        for i in range(0, len(samples) - step, step)
    ]


async def stop_recording(recording: Recording) -> bytes:
    return await asyncio.to_thread(recording.stop)


async def test_the_speaker_plays_and_drains(pulse: PulseEnv) -> None:
    """A queued tone is heard on the sink's monitor, and wait_drained returns after it."""
    recorder = pulse.record_speaker()
    await asyncio.sleep(0.3)
    async with SoundDeviceSpeaker("pulse", rate=24000) as speaker:
        loop = asyncio.get_running_loop()
        started = loop.time()
        speaker.play_nowait(tone(1.0))
        async with asyncio.timeout(5):
            await speaker.wait_drained()
        took = loop.time() - started
    recorded = await stop_recording(recorder)

    loud = [e for e in energy_per_10ms(recorded) if e > 2000]
    print(f"1.0 s tone drained after {took:.2f} s (PulseAudio's stream start-up included)")
    assert 0.95 <= took <= 3.5, took
    assert 80 <= len(loud) <= 110, len(loud)


async def test_flush_silences_the_speaker_within_a_block(pulse: PulseEnv) -> None:
    """After flush(), the sound stops: far less than the remaining second is heard."""
    recorder = pulse.record_speaker()
    await asyncio.sleep(0.3)
    async with SoundDeviceSpeaker("pulse", rate=24000) as speaker:
        speaker.play_nowait(tone(2.0))
        await asyncio.sleep(0.5)
        speaker.flush()
        assert not speaker.playing
        await asyncio.sleep(0.5)
    recorded = await stop_recording(recorder)

    loud_ms = 10 * sum(1 for e in energy_per_10ms(recorded) if e > 2000)
    print(f"tone heard for {loud_ms} ms of a 2000 ms tone flushed after 500 ms")
    assert 350 <= loud_ms <= 750


async def test_the_microphone_captures_what_is_played_into_it(pulse: PulseEnv) -> None:
    """Speech played into the virtual mic arrives at 16 kHz, correlated with the source."""
    source = read_wav_as(DATA / "utterance-weather.wav", CAPTURE)
    captured = bytearray()
    async with SoundDeviceMicrophone("pulse", capture_rate=16000, block_ms=60) as mic:
        player = pulse.play_into_mic(DATA / "utterance-weather.wav")
        async with asyncio.timeout(10):
            async for block in mic.frames():
                captured += block
                if len(captured) >= len(source) + 16000:  # + 0.5 s of latency
                    break
        player.wait()
    a = np.frombuffer(source, dtype="<i2").astype(np.float64)
    b = np.frombuffer(bytes(captured), dtype="<i2").astype(np.float64)
    corr = np.correlate(b, a[8000:40000], mode="valid")
    norm = np.sqrt(np.sum(a[8000:40000] ** 2)) * np.sqrt(
        np.convolve(b**2, np.ones(32000), mode="valid")
    )
    best = float(np.max(corr / np.maximum(norm, 1e-9)))
    print(f"capture correlation with the source: {best:.3f}")
    assert best > 0.9


async def test_held_back_blocks_arrive_joined_and_complete(pulse: PulseEnv) -> None:
    """With handoff_ms, captured blocks come joined (one wake-up for several) and nothing
    is lost; back at 0 they come one by one again."""
    source = read_wav_as(DATA / "utterance-weather.wav", CAPTURE)
    block = CAPTURE.frame_bytes(60)
    captured = bytearray()
    sizes: list[int] = []
    async with SoundDeviceMicrophone("pulse", capture_rate=16000, block_ms=60) as mic:
        mic.handoff_ms = 180
        player = pulse.play_into_mic(DATA / "utterance-weather.wav")
        async with asyncio.timeout(10):
            async for piece in mic.frames():
                captured += piece
                sizes.append(len(piece))
                if len(captured) >= len(source) + 16000:
                    break
            mic.handoff_ms = 0
            singles = [len(await anext(aiter(mic.frames()))) for _ in range(6)]
        player.wait()
    assert set(sizes) == {3 * block}, sizes
    assert singles[-3:] == [block] * 3  # what was held when it changed may come joined
    a = np.frombuffer(source, dtype="<i2").astype(np.float64)[8000:40000]
    b = np.frombuffer(bytes(captured), dtype="<i2").astype(np.float64)
    norm = np.sqrt(np.sum(a**2)) * np.sqrt(np.convolve(b**2, np.ones(len(a)), mode="valid"))
    best = float(np.max(np.correlate(b, a, mode="valid") / np.maximum(norm, 1e-9)))
    assert best > 0.9, best


def left_only(source: Path, target: Path) -> Path:
    """A stereo copy of a mono WAV: the speech on the left channel, silence on the right."""
    mono = np.frombuffer(read_wav_as(source, CAPTURE), dtype="<i2")
    stereo = np.column_stack([mono, np.zeros_like(mono)])
    with wave.open(str(target), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(CAPTURE.rate)
        w.writeframes(stereo.astype("<i2").tobytes())
    return target


async def captured_rms(pulse: PulseEnv, wav: Path, mic: SoundDeviceMicrophone) -> float:
    """The loudest 20 ms of what ``mic`` hears while ``wav`` plays into the virtual mic."""
    captured = bytearray()
    async with mic:
        player = pulse.play_into_mic(wav)
        async with asyncio.timeout(10):
            async for block in mic.frames():
                captured += block
                if len(captured) >= 16000 * 2 * 3:
                    break
        player.wait()
    frame = CAPTURE.frame_bytes(20)
    return max(rms(bytes(captured[i : i + frame])) for i in range(0, len(captured), frame))


async def test_the_configured_channel_is_the_one_heard(pulse: PulseEnv, tmp_path: Path) -> None:
    """With speech on the left only, channel 0 hears it and channel 1 hears silence."""
    wav = left_only(DATA / "utterance-weather.wav", tmp_path / "left.wav")

    left = await captured_rms(pulse, wav, SoundDeviceMicrophone("pulse", channel=0))
    right = await captured_rms(pulse, wav, SoundDeviceMicrophone("pulse", channel=1))

    print(f"loudest 20 ms: channel 0 {left:.0f}, channel 1 {right:.0f}")
    assert left > 1000
    assert right < 30


async def test_the_input_gain_amplifies_the_microphone(pulse: PulseEnv) -> None:
    """+6 dB makes the captured speech twice as loud (its loudest 20 ms stay unclipped)."""
    wav = DATA / "utterance-weather.wav"

    plain = await captured_rms(pulse, wav, SoundDeviceMicrophone("pulse"))
    louder = await captured_rms(pulse, wav, SoundDeviceMicrophone("pulse", gain_db=6))

    print(f"loudest 20 ms: {plain:.0f} at 0 dB, {louder:.0f} at +6 dB")
    # The two captures start at different offsets into the speech, so their 20 ms windows
    # fall differently on it: the loudest one differs by up to ~10 % (1.80 seen once).
    assert 1.7 < louder / plain < 2.3


async def test_a_channel_the_device_lacks_is_a_config_error(pulse: PulseEnv) -> None:
    """audio.input_channel beyond the device's channels ends with a config error naming it."""
    device = find_device("pulse", "input", rescan=True)

    with pytest.raises(ConfigError) as caught:
        async with SoundDeviceMicrophone("pulse", channel=device.inputs):
            pass

    assert caught.value.problems[0][0] == "audio.input_channel"


def test_devices_are_found_by_name_and_index(pulse: PulseEnv) -> None:
    """A name substring and an index select the same device; a wrong name says what exists."""
    by_name = find_device("puls", "output", rescan=True)
    assert find_device(by_name.index, "output").name == by_name.name
    with pytest.raises(AudioDeviceLost, match="no input device matches 'nonexistent'"):
        find_device("nonexistent", "input")


def test_print_devices_lists_pulse(pulse: PulseEnv, capsys: pytest.CaptureFixture[str]) -> None:
    """`coze-edge devices` shows the pulse device and how to configure it."""
    import sys

    assert print_devices(sys.stdout) == 0
    assert "pulse" in capsys.readouterr().out


def test_capture_format_is_what_coze_gets() -> None:
    """The microphone's format is the one chat.update announces."""
    assert AudioFormat(16000) == CAPTURE


async def test_a_microphone_that_delivers_nothing_is_lost(
    pulse: PulseEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source that stops (here: its sink suspended) ends ``frames()`` with AudioDeviceLost
    after NO_AUDIO_TIMEOUT_S; the first block may take FIRST_AUDIO_TIMEOUT_S, since a sound
    server may serve it late (both shortened here)."""
    monkeypatch.setattr(sound_devices, "FIRST_AUDIO_TIMEOUT_S", 1.0)
    monkeypatch.setattr(sound_devices, "NO_AUDIO_TIMEOUT_S", 0.3)
    loop = asyncio.get_running_loop()

    async def drain(frames: AsyncIterator[bytes]) -> None:
        async with asyncio.timeout(5):
            async for _ in frames:
                pass

    async def silent_for(frames: AsyncIterator[bytes]) -> tuple[str, float]:
        started = loop.time()
        with pytest.raises(AudioDeviceLost) as lost:
            await drain(frames)
        return str(lost.value), loop.time() - started

    try:
        pulse.pactl("suspend-sink", "micfeed", "1")
        async with SoundDeviceMicrophone("pulse", block_ms=20) as mic:
            message, waited = await silent_for(mic.frames())
        assert message == "microphone 'pulse' delivered nothing for 1 s"
        assert 1.0 <= waited < 2.0
        pulse.pactl("suspend-sink", "micfeed", "0")
        async with SoundDeviceMicrophone("pulse", block_ms=20) as mic:
            frames = mic.frames()
            for _ in range(5):
                await anext(frames)
            pulse.pactl("suspend-sink", "micfeed", "1")
            message, waited = await silent_for(frames)
        assert message == "microphone 'pulse' delivered nothing for 0.3 s"
        assert 0.3 <= waited < 1.0
    finally:
        pulse.pactl("suspend-sink", "micfeed", "0")


async def test_a_lost_sound_server_is_reported_as_device_lost(pulse: PulseEnv) -> None:
    """Killing PulseAudio mid-capture raises AudioDeviceLost within a few seconds."""
    try:
        async with SoundDeviceMicrophone("pulse") as mic:
            frames = mic.frames()
            await anext(frames)
            pulse.processes[0].kill()

            async def drain() -> None:
                async with asyncio.timeout(6):
                    async for _ in frames:
                        pass

            with pytest.raises(AudioDeviceLost):
                await drain()
    finally:
        pulse.restart()  # for the tests after this one


def alsa_plugins_loaded() -> set[str]:
    """The ALSA plugin modules mapped into this process (libasound_module_pcm_*.so)."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    return {line.rsplit("/", 1)[-1] for line in maps if "libasound_module_pcm_" in line}


async def test_only_the_plugin_in_use_stays_loaded(pulse: PulseEnv) -> None:
    """Listing the devices opens every ALSA plugin (a52, jack, ...); once the scan is done
    only the one the open stream uses stays in memory."""
    find_device("pulse", "input", rescan=True)
    assert alsa_plugins_loaded() == set()
    async with SoundDeviceMicrophone("pulse", capture_rate=16000, block_ms=60):
        assert alsa_plugins_loaded() == {"libasound_module_pcm_pulse.so"}
