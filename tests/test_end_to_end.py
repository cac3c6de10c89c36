"""`coze-edge run` as a subprocess: file audio in, the bundled simulator on loopback, reply out."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from coze_edge.adapters.opus import OpusDecoder
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from coze_edge.simulator import Faults, Simulator
from tests.support.data import DATA, trace_audio

TURN_TIMEOUT_S = 60
STOP_WITHIN_S = 3.0


def write_config(tmp_path: Path, sim: Simulator, **audio: Any) -> Path:
    pat = tmp_path / "pat"
    pat.write_text("e2e-pat\n")
    pat.chmod(0o600)
    config = {
        "coze": {"api_base": sim.api_base, "ws_base": sim.ws_base, "bot_id": "7496347519799787557"},
        "auth": {"method": "pat", "pat_file": str(pat)},
        "device": {"id": "5551234", "name": "kitchen"},
        "state_dir": str(tmp_path / "state"),
        "audio": {
            "backend": "file",
            "file_input": str(DATA / "utterance-weather.wav"),
            "file_output": str(tmp_path / "out.wav"),
            **audio,
        },
        "log": {"level": "info"},
    }
    (tmp_path / "state").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def start_daemon(
    config: Path, command: str = "run", *, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """`coze-edge COMMAND -c CONFIG` with stdout and stderr on one pipe, no stdin."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COZE_EDGE_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "coze_edge",
        command,
        "-c",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**clean, **(env or {})},
    )


async def read_until(proc: asyncio.subprocess.Process, marker: str, log: list[str]) -> None:
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise AssertionError("daemon exited early:\n" + "".join(log))
        log.append(line)
        if marker in line:
            return


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
    proc = await start_daemon(config)
    log: list[str] = []
    try:
        async with asyncio.timeout(TURN_TIMEOUT_S):
            await read_until(proc, "turn:", log)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_WITHIN_S + 2):
            rest, _ = await proc.communicate()
    return proc.returncode, "".join(log) + rest.decode()


async def test_a_full_turn_through_the_real_cli(tmp_path: Path) -> None:
    """A spoken question gives one committed turn upstream and the reply in the output WAV."""
    async with Simulator(pats=("e2e-pat",), reply_speed=20.0) as sim:
        config = write_config(tmp_path, sim)
        returncode, text = await one_turn(config)

        assert returncode == 0, text
        assert "e2e-pat" not in text
        [conn] = sim.connections
        types = conn.event_types()
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


async def test_an_opus_uplink_turn(tmp_path: Path) -> None:
    """With ``audio.codec: opus`` each append is one 20 ms Opus packet; Coze (the simulator,
    decoding with libopus) hears the question, and the reply is the same."""
    async with Simulator(pats=("e2e-pat",), reply_speed=20.0) as sim:
        config = write_config(tmp_path, sim, codec="opus", opus_bitrate=24000)
        returncode, text = await one_turn(config)
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


@pytest.mark.parametrize(
    "state", ["unauthorized", "connecting", "idle", "listening", "thinking", "speaking"]
)
async def test_sigterm_in_every_state_stops_cleanly_within_three_seconds(
    tmp_path: Path, state: str
) -> None:
    """SIGTERM in any state: exit 0 within 3 s, and the saved state (the conversation id,
    the token file when there is one) is still there and whole afterwards."""
    async with Simulator(pats=("e2e-pat",), reply_speed=0.5) as sim:
        quiet = state in ("unauthorized", "connecting", "idle")
        config = write_config(
            tmp_path,
            sim,
            file_input=str(DATA / ("silence-2s.wav" if quiet else "utterance-weather.wav")),
        )
        if state == "unauthorized":
            text = config.read_text().replace(
                "method: pat", "method: device_code\n  client_id: 1234.app.coze"
            )
            config.write_text(text)
        if state == "connecting":
            sim.faults = Faults(reject_handshake=503)
        if state == "thinking":
            sim.faults = Faults(silent=True)
        proc = await start_daemon(config)
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


async def test_headless_login_then_a_turn_and_no_login_on_restart(tmp_path: Path) -> None:
    """No token, no TTY: the code is logged, approved in Coze, the turn completes;
    a second start uses the saved token and asks for no code."""
    async with Simulator(poll_interval_s=1, reply_speed=20.0) as sim:
        config = write_config(tmp_path, sim)
        text = config.read_text().replace(
            "method: pat", "method: device_code\n  client_id: 1234.app.coze"
        )
        config.write_text(text)
        log: list[str] = []
        proc = await start_daemon(config)
        try:
            async with asyncio.timeout(30):
                await read_until(proc, "state: unauthorized", log)
            assert "enter the code" in "".join(log)
            [code] = sim.pending_user_codes()
            assert code not in "".join(log)  # user codes are secrets in logs
            sim.approve(code)
            async with asyncio.timeout(TURN_TIMEOUT_S):
                await read_until(proc, "turn:", log)
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(STOP_WITHIN_S + 2):
                await proc.communicate()
        assert proc.returncode == 0

        second = await start_daemon(config)
        again: list[str] = []
        try:
            async with asyncio.timeout(30):
                await read_until(second, "state: idle", again)
        finally:
            second.send_signal(signal.SIGTERM)
            async with asyncio.timeout(STOP_WITHIN_S + 2):
                await second.communicate()

    assert "enter the code" not in "".join(again)
    assert len(sim.connections) == 2


async def test_terminal_login_shows_code_url_and_qr_then_saves(tmp_path: Path) -> None:
    """`coze-edge login` prints the code, the URL and a QR code, and saves the token."""
    async with Simulator(poll_interval_s=1) as sim:
        config = write_config(tmp_path, sim)
        text = config.read_text().replace(
            "method: pat", "method: device_code\n  client_id: 1234.app.coze"
        )
        config.write_text(text)
        proc = await start_daemon(config, "login")
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


async def test_the_daemon_speaks_sd_notify(tmp_path: Path) -> None:
    """Under systemd: READY=1 after the first connection, STATUS= per state, WATCHDOG=1
    while audio flows, STOPPING=1 on SIGTERM."""
    import socket

    notify = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    async with Simulator(pats=("e2e-pat",)) as sim:
        config = write_config(tmp_path, sim, file_input=str(DATA / "silence-2s.wav"))
        proc = await start_daemon(
            config, env={"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000"}
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


async def test_a_refused_personal_access_token_stops_with_what_to_do(tmp_path: Path) -> None:
    """HTTP 401 for a PAT (nothing can renew it): exit 77, the logid, and the fix."""
    async with Simulator(pats=("e2e-pat",)) as sim:
        sim.faults = Faults(reject_handshake=401)
        proc = await start_daemon(write_config(tmp_path, sim))
        async with asyncio.timeout(15):
            out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 77, text
    assert "websocket handshake refused: HTTP 401" in text
    assert "logid=" in text
    assert "put a new one in auth.pat_file" in text
    assert "e2e-pat" not in text
