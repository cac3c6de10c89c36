"""
Bench only: the same voice turn as the daemon, through the official cozepy SDK (0.20.0),
as small as such a client gets. Prints ``ready`` when connected and ``done`` when the
reply has played, so scripts/bench can read its CPU time around the turn. Never a runtime
dependency.

    python -m scripts.reference_client WS_BASE WAV
        the question's audio is read from WAV and sent in real time in 60 ms chunks, then
        ``input_audio_buffer.complete``; the reply is "played" in real time (paced, written
        nowhere): the file-backend comparison.
    python -m scripts.reference_client WS_BASE --device NAME --seconds S
        with sounddevice: S seconds of the PortAudio microphone NAME are sent as they are
        captured (60 ms blocks, push-to-talk: no VAD), then ``complete``; the reply plays
        on the PortAudio speaker NAME (24 kHz, 20 ms blocks). The like-for-like comparison
        with the daemon on the same devices.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import wave
from pathlib import Path
from typing import Any

import cozepy
import numpy as np
from cozepy.request import Requester
from cozepy.websockets.chat import AsyncWebsocketsChatClient
from cozepy.websockets.ws import InputAudio, OutputAudio, PCMConfig, WebsocketsEventType


def speech_16k(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
    if rate != 16000:
        positions = np.arange(0, len(samples), rate / 16000)
        samples = np.interp(positions, np.arange(len(samples)), samples).astype("<i2")
    return samples.tobytes()


class Devices:
    """A PortAudio microphone (16 kHz, 60 ms blocks) and speaker (24 kHz, 20 ms blocks)."""

    def __init__(self, device: str) -> None:
        import sounddevice as sd

        self.loop = asyncio.get_running_loop()
        self.captured: asyncio.Queue[bytes] = asyncio.Queue()
        self.playing = bytearray()
        self.drained = asyncio.Event()
        self.mic = sd.RawInputStream(
            device=device, samplerate=16000, channels=1, dtype="int16", blocksize=960,
            callback=self._captured,
        )  # fmt: skip
        self.speaker = sd.RawOutputStream(
            device=device, samplerate=24000, channels=1, dtype="int16", blocksize=480,
            callback=self._play,
        )  # fmt: skip

    def _captured(self, indata: Any, frames: int, when: Any, status: Any) -> None:
        self.loop.call_soon_threadsafe(self.captured.put_nowait, bytes(indata))

    def _play(self, outdata: Any, frames: int, when: Any, status: Any) -> None:
        need = frames * 2
        chunk = bytes(self.playing[:need])
        del self.playing[:need]
        outdata[: len(chunk)] = chunk
        outdata[len(chunk) :] = bytes(need - len(chunk))
        if not chunk:
            self.loop.call_soon_threadsafe(self.drained.set)


async def main(ws_base: str, wav: Path | None, device: str | None, seconds: float) -> None:
    reply = bytearray()
    finished = asyncio.Event()

    async def on_audio(cli: Any, event: Any) -> None:
        reply.extend(event.data.get_audio())

    async def on_done(cli: Any, event: Any) -> None:
        finished.set()

    client = AsyncWebsocketsChatClient(
        base_url=ws_base,
        requester=Requester(auth=cozepy.TokenAuth("sim-pat")),
        bot_id="7",
        on_event={
            WebsocketsEventType.CONVERSATION_AUDIO_DELTA: on_audio,
            WebsocketsEventType.CONVERSATION_CHAT_COMPLETED: on_done,
        },
    )
    await client.connect()  # type: ignore[no-untyped-call]
    await client.chat_update(
        cozepy.ChatUpdateEvent.Data(
            input_audio=InputAudio(
                format="pcm", codec="pcm", sample_rate=16000, channel=1, bit_depth=16
            ),
            output_audio=OutputAudio(codec="pcm", pcm_config=PCMConfig(sample_rate=24000)),
        )
    )
    if device is not None:
        await with_devices(client, Devices(device), seconds, reply, finished)
    else:
        assert wav is not None
        await from_file(client, wav, reply, finished)
    print("done", flush=True)
    await client.close()


async def from_file(client: Any, wav: Path, reply: bytearray, finished: asyncio.Event) -> None:
    print("ready", flush=True)
    await asyncio.sleep(0.5)
    speech = speech_16k(wav)
    chunk = 1920  # 60 ms
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(speech), chunk)):
        await client.input_audio_buffer_append(
            cozepy.InputAudioBufferAppendEvent.Data(delta=speech[offset : offset + chunk])
        )
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.06 - time.monotonic()))
    await client.input_audio_buffer_complete()
    await finished.wait()
    # Play it: as long as the audio lasts (24 kHz mono s16le).
    await asyncio.sleep(len(reply) / 48000)


async def with_devices(
    client: Any, devices: Devices, seconds: float, reply: bytearray, finished: asyncio.Event
) -> None:
    with devices.mic, devices.speaker:
        print("ready", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            block = await devices.captured.get()
            await client.input_audio_buffer_append(
                cozepy.InputAudioBufferAppendEvent.Data(delta=block)
            )
        await client.input_audio_buffer_complete()
        await finished.wait()
        devices.playing += reply
        devices.drained.clear()
        await devices.drained.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ws_base")
    parser.add_argument("wav", nargs="?", type=Path)
    parser.add_argument("--device", help="PortAudio device for microphone and speaker")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long to record")
    args = parser.parse_args()
    if (args.wav is None) == (args.device is None):
        parser.error("give a WAV or --device")
    asyncio.run(main(args.ws_base, args.wav, args.device, args.seconds))
