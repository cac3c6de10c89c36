"""`coze-edge run` as a subprocess: file audio in, the bundled simulator on loopback, reply out."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import wave
from pathlib import Path

import numpy as np
import pytest

from coze_edge.adapters.opus import OpusDecoder
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from coze_edge.simulator import Faults, Simulator
from tests.support.cli import (
    STOP_WITHIN_S,
    read_until,
    running_cli,
    start_cli,
    write_cli_config,
)
from tests.support.daemon import SIM_PAT
from tests.support.data import DATA, trace_audio

TURN_TIMEOUT_S = 60
LOGIN = {"method": "device_code", "client_id": "1234.app.coze"}


def speech_span(pcm: bytes, rate: int) -> tuple[int, int]:
    """First and last byte offsets of 20 ms frames well above the noise floor."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    frame = rate // 50
    energy = [
        float(np.sqrt(np.mean(samples[i : i + frame] ** 2)))
        for i in range(0, len(samples) - frame, frame)
    ]
    loud = [i for i, e in enumerate(energy) if e > 0.1 * max(energy)]
    return loud[0] * frame * 2, (loud[-1] + 1) * frame * 2


async def one_turn(config: Path) -> tuple[int | None, str]:
    """`coze-edge run` until its first turn is done, then SIGTERM: exit code and output."""
    async with running_cli(config) as daemon:
        async with asyncio.timeout(TURN_TIMEOUT_S):
            await daemon.read_until("turn:")
    return daemon.returncode, daemon.output


@pytest.mark.simulator(reply_speed=20.0)
async def test_a_full_turn_through_the_real_cli(
    tmp_path: Path, sim: Simulator, cli_config: Path
) -> None:
    """A spoken question gives one committed turn upstream and the reply in the output WAV."""
    returncode, text = await one_turn(cli_config)

    assert returncode == 0, text
    assert SIM_PAT not in text
    [conn] = sim.connections
    types = conn.event_types()
    ids = [frame.get("id") for frame in conn.received]
    assert all(ids)  # an id on every upstream event,
    assert len(set(ids)) == len(ids)  # each its own
    assert conn.headers["User-Agent"].startswith("coze-edge/")
    about = json.loads(conn.headers["X-Coze-Client-User-Agent"])
    assert about["lang"] == "python"
    assert set(about) == {"version", "lang", "lang_version", "os_name", "os_version"}
    first_append = types.index("input_audio_buffer.append")
    update = conn.received[types.index("chat.update")]
    assert types.index("chat.update") < first_append
    assert update["data"]["input_audio"]["format"] == "pcm"
    assert update["data"]["input_audio"]["sample_rate"] == 16000
    assert types.count("input_audio_buffer.complete") == 1
    assert conn.query["device_id"] == "5551234"

    # The appended audio is a contiguous piece of the input that covers the spoken part.
    spoken = read_wav_as(DATA / "utterance-weather.wav", CAPTURE)
    appended = conn.appended_audio()
    offset = spoken.find(appended)
    assert offset >= 0, "appended audio is not a contiguous piece of the input"
    start, end = speech_span(spoken, 16000)
    assert offset <= start
    assert offset + len(appended) >= end

    with wave.open(str(tmp_path / "out.wav"), "rb") as wav:
        played = wav.readframes(wav.getnframes())
        assert wav.getframerate() == 24000
    assert played == trace_audio("websocket_chat_success")


@pytest.mark.simulator(reply_speed=20.0)
@pytest.mark.daemon(audio={"codec": "opus", "opus_bitrate": 24000})
async def test_an_opus_uplink_turn(tmp_path: Path, sim: Simulator, cli_config: Path) -> None:
    """With ``audio.codec: opus`` each append is one 20 ms Opus packet; Coze (the simulator,
    decoding with libopus) hears the question, and the reply is the same."""
    returncode, text = await one_turn(cli_config)
    assert returncode == 0, text
    assert "uplink: Opus 24000 bit/s in 20 ms packets (libopus" in text
    [conn] = sim.connections
    types = conn.event_types()
    update = conn.received[types.index("chat.update")]
    assert update["data"]["input_audio"] == {
        "format": "pcm",
        "codec": "opus",
        "sample_rate": 16000,
        "channel": 1,
        "bit_depth": 16,
    }
    assert types.count("input_audio_buffer.complete") == 1
    assert "error" not in types
    packets = [
        base64.b64decode(frame["data"]["delta"])
        for frame in conn.received
        if frame["event_type"] == "input_audio_buffer.append"
    ]

    decoder = OpusDecoder(16000)
    assert {len(decoder.decode(packet)) for packet in packets} == {CAPTURE.frame_bytes(20)}
    # What Coze heard is the spoken question: find it in the input by correlation.
    spoken = np.frombuffer(read_wav_as(DATA / "utterance-weather.wav", CAPTURE), dtype="<i2")
    heard = np.frombuffer(bytes(conn.heard), dtype="<i2").astype(np.float64)
    start, end = (i // 2 for i in speech_span(spoken.tobytes(), 16000))
    speech = spoken[start:end].astype(np.float64)
    scores = np.correlate(heard, speech, mode="valid")
    at = int(np.argmax(scores))
    match = heard[at : at + len(speech)]
    assert (
        float(np.dot(match, speech) / np.sqrt(np.dot(match, match) * np.dot(speech, speech))) > 0.9
    )
    pcm_bytes = len(packets) * CAPTURE.frame_bytes(20)
    assert sum(map(len, packets)) < pcm_bytes / 8  # 256 kbit/s of PCM against about 24
    with wave.open(str(tmp_path / "out.wav"), "rb") as wav:
        assert wav.readframes(wav.getnframes()) == trace_audio("websocket_chat_success")


@pytest.mark.simulator(reply_speed=0.5)
@pytest.mark.parametrize(
    "state", ["unauthorized", "connecting", "idle", "listening", "thinking", "speaking"]
)
async def test_sigterm_in_every_state_stops_cleanly_within_three_seconds(
    tmp_path: Path, sim: Simulator, state: str
) -> None:
    """SIGTERM in any state: exit 0 within 3 s, and the saved state (the conversation id,
    the token file when there is one) is still there and whole afterwards."""
    quiet = state in ("unauthorized", "connecting", "idle")
    config = write_cli_config(
        tmp_path,
        sim,
        audio={"file_input": str(DATA / ("silence-2s.wav" if quiet else "utterance-weather.wav"))},
        auth=LOGIN if state == "unauthorized" else {},
    )
    if state == "connecting":
        sim.faults = Faults(reject_handshake=503)
    if state == "thinking":
        sim.faults = Faults(silent=True)
    proc = await start_cli("run", "-c", str(config))
    log: list[str] = []
    try:
        async with asyncio.timeout(30):
            await read_until(proc, f"state: {state}", log)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(STOP_WITHIN_S):
        rest, _ = await proc.communicate()
    took = loop.time() - sent_at

    text = "".join(log) + rest.decode()
    assert proc.returncode == 0, text
    assert took < STOP_WITHIN_S
    assert "Traceback" not in text
    for saved in (tmp_path / "state").glob("*.json"):
        json.loads(saved.read_text())  # whole, not torn
    assert not list((tmp_path / "state").glob(".*.tmp"))


@pytest.mark.simulator(poll_interval_s=1, reply_speed=20.0)
@pytest.mark.daemon(auth=LOGIN)
async def test_headless_login_then_a_turn_and_no_login_on_restart(
    sim: Simulator, cli_config: Path
) -> None:
    """No token, no TTY: the code is logged, approved in Coze, the turn completes;
    a second start uses the saved token and asks for no code."""
    async with running_cli(cli_config) as first:
        async with asyncio.timeout(30):
            await first.read_until("state: unauthorized")
        assert "enter the code" in "".join(first.lines)
        [code] = sim.pending_user_codes()
        assert code not in "".join(first.lines)  # user codes are secrets in logs
        sim.approve(code)
        async with asyncio.timeout(TURN_TIMEOUT_S):
            await first.read_until("turn:")
    assert first.returncode == 0

    async with running_cli(cli_config) as second:
        async with asyncio.timeout(30):
            await second.read_until("state: idle")

    assert "enter the code" not in "".join(second.lines)
    assert len(sim.connections) == 2


@pytest.mark.simulator(poll_interval_s=1)
@pytest.mark.daemon(auth=LOGIN)
async def test_terminal_login_shows_code_url_and_qr_then_saves(
    tmp_path: Path, sim: Simulator, cli_config: Path
) -> None:
    """`coze-edge login` prints the code, the URL and a QR code, and saves the token."""
    proc = await start_cli("login", "-c", str(cli_config))
    log: list[str] = []
    async with asyncio.timeout(30):
        await read_until(proc, "waiting", log)
        [code] = sim.pending_user_codes()
        sim.approve(code)
        rest, _ = await proc.communicate()
    shown = "".join(log) + rest.decode()

    assert proc.returncode == 0, shown
    assert f"enter the code:  {code}" in shown
    assert f"{sim.api_base}/device" in shown
    assert "█" in shown or "▀" in shown  # the QR code, drawn with block characters
    token = json.loads((tmp_path / "state" / "token.json").read_text())
    assert token["access_token"].startswith("czu_")


@pytest.mark.daemon(audio={"file_input": str(DATA / "silence-2s.wav")})
async def test_the_daemon_speaks_sd_notify(tmp_path: Path, cli_config: Path) -> None:
    """Under systemd: READY=1 after the first connection, STATUS= per state, WATCHDOG=1
    while audio flows, STOPPING=1 on SIGTERM."""
    import socket

    notify = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    proc = await start_cli(
        "run",
        "-c",
        str(cli_config),
        env={"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000"},
    )
    messages: list[str] = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(30):
        while messages.count("WATCHDOG=1") < 3:
            messages.append((await loop.sock_recv(sock, 4096)).decode())
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(STOP_WITHIN_S):
        await proc.wait()
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    sock.close()

    assert proc.returncode == 0
    assert "READY=1" in messages
    assert messages.index("STATUS=connecting") < messages.index("READY=1")
    assert "STATUS=idle" in messages
    assert messages[-1] == "STOPPING=1"


async def test_a_refused_personal_access_token_stops_with_what_to_do(
    sim: Simulator, cli_config: Path
) -> None:
    """HTTP 401 for a PAT (nothing can renew it): exit 77, the logid, and the fix."""
    sim.faults = Faults(reject_handshake=401)
    proc = await start_cli("run", "-c", str(cli_config))
    async with asyncio.timeout(15):
        out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 77, text
    assert "websocket handshake refused: HTTP 401" in text
    assert "logid=" in text
    assert "put a new one in auth.pat_file" in text
    assert SIM_PAT not in text


async def test_the_chatflow_settings_reach_coze(tmp_path: Path, sim: Simulator) -> None:
    """coze.workflow_id goes on the socket; custom_variables, meta_data and parameters go
    into every session's chat_config, as the config wrote them."""
    config = write_cli_config(
        tmp_path,
        sim,
        coze={
            "workflow_id": "7480000000000000001",
            "custom_variables": {"room": "kitchen", "owner": 42},
            "meta_data": {"site": "north"},
            "parameters": {"CONVERSATION_NAME": "Default", "limits": [1, 2], "strict": True},
        },
    )
    async with running_cli(config) as daemon:
        async with asyncio.timeout(30):
            await daemon.read_until("state: idle")
    [conn] = sim.connections
    assert conn.query["workflow_id"] == "7480000000000000001"
    update = conn.received[conn.event_types().index("chat.update")]["data"]["chat_config"]
    assert update["custom_variables"] == {"room": "kitchen", "owner": "42"}
    assert update["meta_data"] == {"site": "north"}
    assert update["parameters"] == {
        "CONVERSATION_NAME": "Default",
        "limits": [1, 2],
        "strict": True,
    }
