"""The simulator is shaped like Coze: the official cozepy 0.20.0 client accepts every frame."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import pytest

from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from coze_edge.simulator import Simulator
from tests.support.data import DATA, trace_audio

with warnings.catch_warnings(record=True):
    # cozepy imports authlib's deprecated jose module. authlib warns, and installs an
    # "always" filter for its own warnings that would outrank the suite's "error" for good.
    # Recording swallows that one warning; the filters are put back as they were.
    import cozepy
    from cozepy.request import Requester, SyncHTTPClient
    from cozepy.websockets.chat import AsyncWebsocketsChatClient
    from cozepy.websockets.ws import InputAudio, OutputAudio, PCMConfig, WebsocketsEventType

TIMEOUT_S = 20


class Recorder:
    """cozepy handlers for every event type: records types, audio and errors."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.audio = bytearray()
        self.errors: list[Any] = []
        self.done = asyncio.Event()

    def handlers(self) -> dict[WebsocketsEventType, Any]:
        async def on_any(cli: Any, event: Any) -> None:
            self.types.append(event.event_type.value)
            if event.event_type is WebsocketsEventType.CONVERSATION_AUDIO_DELTA:
                self.audio += event.data.get_audio()
            if event.event_type in (
                WebsocketsEventType.CONVERSATION_CHAT_COMPLETED,
                WebsocketsEventType.CONVERSATION_CHAT_CANCELED,
                WebsocketsEventType.CONVERSATION_AUDIO_COMPLETED,
            ):
                self.done.set()

        async def on_error(cli: Any, error: Any) -> None:
            self.errors.append(error)
            self.done.set()

        handlers: dict[WebsocketsEventType, Any] = dict.fromkeys(WebsocketsEventType, on_any)
        del handlers[WebsocketsEventType.CLOSED]  # called with the client only
        handlers[WebsocketsEventType.ERROR] = on_error
        handlers[WebsocketsEventType.CLIENT_ERROR] = on_error
        return handlers


async def wait_for_type(recorder: Recorder, event_type: str) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while event_type not in recorder.types:  # noqa: ASYNC110 - cozepy calls us back
            await asyncio.sleep(0.01)


def chat_client(sim: Simulator, recorder: Recorder) -> AsyncWebsocketsChatClient:
    requester = Requester(auth=cozepy.TokenAuth("sim-pat"))
    return AsyncWebsocketsChatClient(
        base_url=sim.ws_base,
        requester=requester,
        bot_id="7496347519799787557",
        on_event=recorder.handlers(),
        device_id=12345,
    )


async def configure(client: AsyncWebsocketsChatClient) -> None:
    await client.chat_update(
        cozepy.ChatUpdateEvent.Data(
            input_audio=InputAudio(
                format="pcm", codec="pcm", sample_rate=16000, channel=1, bit_depth=16
            ),
            output_audio=OutputAudio(codec="pcm", pcm_config=PCMConfig(sample_rate=24000)),
        )
    )


async def test_cozepy_runs_a_voice_turn_against_the_simulator() -> None:
    """A full audio turn: every event validates in cozepy's models; the audio is Coze's."""
    recorder = Recorder()
    async with Simulator(reply_speed=50.0) as sim:
        client = chat_client(sim, recorder)
        await client.connect()  # type: ignore[no-untyped-call]
        await configure(client)
        speech = read_wav_as(DATA / "utterance-weather.wav", CAPTURE)
        for start in range(0, len(speech), 1920):
            await client.input_audio_buffer_append(
                cozepy.InputAudioBufferAppendEvent.Data(delta=speech[start : start + 1920])
            )
        await client.input_audio_buffer_complete()
        async with asyncio.timeout(TIMEOUT_S):
            while "conversation.chat.completed" not in recorder.types and not recorder.errors:
                recorder.done.clear()
                await recorder.done.wait()
        await client.close()
        [conn] = sim.connections

    assert recorder.errors == []
    assert recorder.types[0] == "chat.created"
    for expected in (
        "chat.updated",
        "input_audio_buffer.completed",
        "conversation.audio_transcript.completed",
        "conversation.chat.created",
        "conversation.message.delta",
        "conversation.audio.delta",
        "conversation.audio.completed",
        "conversation.chat.completed",
    ):
        assert expected in recorder.types, expected
    assert bytes(recorder.audio) == trace_audio("websocket_chat_success")
    assert conn.appended_audio() == speech
    assert conn.query["device_id"] == "12345"


async def test_cozepy_cancel_gets_chat_canceled() -> None:
    """conversation.chat.cancel mid-reply is answered by a canceled event cozepy accepts."""
    recorder = Recorder()
    async with Simulator(reply_speed=2.0) as sim:
        client = chat_client(sim, recorder)
        await client.connect()  # type: ignore[no-untyped-call]
        await configure(client)
        await client.input_audio_buffer_append(
            cozepy.InputAudioBufferAppendEvent.Data(delta=bytes(3200))
        )
        await client.input_audio_buffer_complete()
        await wait_for_type(recorder, "conversation.audio.delta")
        await client.conversation_chat_cancel()
        await wait_for_type(recorder, "conversation.chat.canceled")
        await client.close()

    assert recorder.errors == []
    assert "conversation.chat.completed" not in recorder.types


async def test_cozepy_takes_a_refusal_with_its_origin_message() -> None:
    """A cancel with nothing running is refused with error 4104; cozepy's models accept
    the event, detail.origin_message included, and the socket keeps working."""
    recorder = Recorder()
    async with Simulator() as sim:
        client = chat_client(sim, recorder)
        await client.connect()  # type: ignore[no-untyped-call]
        await client.conversation_chat_cancel()
        async with asyncio.timeout(TIMEOUT_S):
            await recorder.done.wait()
        await configure(client)
        await wait_for_type(recorder, "chat.updated")
        await client.close()

    [event] = recorder.errors
    assert event.event_type is WebsocketsEventType.ERROR
    assert isinstance(event.data, cozepy.CozeAPIError)
    assert event.data.code == 4104
    assert event.data.logid == sim.connections[0].logid
    assert json.loads(event.detail.origin_message) == sim.connections[0].received[0]
    assert sim.connections[0].received[0]["event_type"] == "conversation.chat.cancel"


def test_cozepy_device_flow_and_refresh_against_the_simulator() -> None:
    """cozepy's DeviceOAuthApp gets a code, a token once approved, and a rotated refresh."""

    async def scenario() -> None:
        async with Simulator(poll_interval_s=1) as sim:
            app = cozepy.DeviceOAuthApp("1234.app.coze", base_url=sim.api_base)
            # Give cozepy an HTTP client we can close, so no socket outlives the test.
            http = SyncHTTPClient()  # type: ignore[no-untyped-call]
            app._requester = Requester(sync_client=http)
            code = await asyncio.to_thread(app.get_device_code)
            assert code.user_code in sim.pending_user_codes()
            assert str(code.verification_url).endswith(f"?user_code={code.user_code}")
            with pytest.raises(cozepy.CozePKCEAuthError, match="authorization_pending"):
                await asyncio.to_thread(app.get_access_token, code.device_code)
            sim.approve(code.user_code)
            await asyncio.sleep(1.05)  # honour the interval, else slow_down
            token = await asyncio.to_thread(app.get_access_token, code.device_code)
            assert token.access_token
            assert token.refresh_token
            renewed = await asyncio.to_thread(app.refresh_access_token, token.refresh_token)
            assert renewed.refresh_token != token.refresh_token
            assert renewed.expires_in > 1_700_000_000  # absolute epoch seconds
            http.close()

    asyncio.run(scenario())
