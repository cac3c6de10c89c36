"""
Bench only: the same voice turn as the daemon, through the official cozepy SDK (0.20.0),
as small as such a client gets: the question's audio is sent in real time in 60 ms chunks,
then ``input_audio_buffer.complete``; the reply's audio is "played" in real time (paced,
written nowhere). Prints ``ready`` when connected and ``done`` when the reply has played,
so scripts/bench can read its CPU time around the turn. Never a runtime dependency.

    python scripts/reference_client.py WS_BASE WAV
"""

from __future__ import annotations

import asyncio
import sys
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


async def main(ws_base: str, wav: Path) -> None:
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
    print("done", flush=True)
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
