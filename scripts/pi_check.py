"""
The parts of ``scripts/pi-check`` that run inside the arm64 root, on its own Python:

* ``platform [CPU]``: the machine, Python, glibc and CPU features this process sees; fails
  unless it is aarch64 and, with CPU (``cortex-a53``, ``cortex-a72``, ``cortex-a76``),
  unless the features are that core's (qemu's default CPU has many no Pi has).
* ``wheels REPORT VENV...``: every package of pip's installation report (``pip install
  --dry-run --report``) came as a wheel that runs on aarch64, and no package in the venvs
  was built here (a wheel tagged ``linux_aarch64`` can only have been compiled locally:
  PyPI accepts only manylinux and musllinux tags). Exit 1 names those that did not.
* ``mirror SUITE`` (on the host): the Debian archive this machine's apt uses for SUITE.
* ``turn SOURCE [--echo-cancellation]``: one turn of the installed daemon on PulseAudio null
  sinks: the wake word, the Opus uplink, the whole reply played; with
  ``--echo-cancellation``, also a fixed echo path from the speaker into the microphone and
  the daemon's echo cancellation on it (``coze-edge[aec]``). Under emulation echo
  cancellation alone costs about 0.75 CPU seconds per audio second (55 times an x86-64
  core's), so that turn cannot keep real time there. Run it with the installed venv's
  python and ``-P``, so that ``coze_edge`` is the installed one; ``tests.support`` comes
  from the checkout SOURCE.
* ``aec-cost SOURCE``: CPU per audio second of echo cancellation, the wake word and Opus.

Only the standard library is imported at the top: ``platform`` and ``wheels`` run on the
root's ``/usr/bin/python3``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import sys
from pathlib import Path
from typing import Any

HWCAP_NAMES = (
    "fp",
    "asimd",
    "evtstrm",
    "aes",
    "pmull",
    "sha1",
    "sha2",
    "crc32",
    "atomics",
    "fphp",
    "asimdhp",
    "cpuid",
    "asimdrdm",
    "jscvt",
    "fcma",
    "lrcpc",
    "dcpop",
    "sha3",
    "sm3",
    "sm4",
    "asimddp",
    "sha512",
    "sve",
    "asimdfhm",
    "dit",
    "uscat",
    "ilrcpc",
    "flagm",
    "ssbs",
    "sb",
    "paca",
    "pacg",
)
"""AT_HWCAP's bits on arm64, in order (Linux, arch/arm64/include/uapi/asm/hwcap.h)."""

ARMV8_0 = frozenset(("fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "cpuid"))
CORES = {
    "cortex-a53": ARMV8_0,  # Pi 3, Pi Zero 2 W
    "cortex-a72": ARMV8_0,  # Pi 4
    # Pi 5: ARMv8.2 with the dot product
    "cortex-a76": ARMV8_0 | {"atomics", "fphp", "asimdhp", "asimdrdm", "lrcpc", "dcpop", "asimddp"},
}
"""What each Pi's core may show in AT_HWCAP (and nothing in AT_HWCAP2). qemu's models of
these cores carry the crypto extension (aes, pmull, sha1, sha2), which the Pi 3's and
Pi 4's SoCs lack; evtstrm is the kernel's event stream, which qemu-user does not show."""

AT_HWCAP = 16
AT_HWCAP2 = 26


def hwcap_features(hwcap: int, hwcap2: int = 0) -> set[str]:
    """The names of the features set in AT_HWCAP and AT_HWCAP2. A bit past the table, and
    every AT_HWCAP2 bit (no Pi's core sets one), is named by its number (``bit40``,
    ``hwcap2:bit1``), so that no feature is silently dropped."""
    return {
        HWCAP_NAMES[i] if i < len(HWCAP_NAMES) else f"bit{i}"
        for i in range(hwcap.bit_length())
        if hwcap >> i & 1
    } | {f"hwcap2:bit{i}" for i in range(hwcap2.bit_length()) if hwcap2 >> i & 1}


def beyond_core(features: set[str], core: str) -> set[str]:
    """The features that ``core`` does not have (empty: a process could be on that core)."""
    return features - CORES[core]


def cpu_features() -> set[str]:
    getauxval = ctypes.CDLL(None).getauxval
    getauxval.restype = ctypes.c_ulong
    getauxval.argtypes = [ctypes.c_ulong]
    return hwcap_features(int(getauxval(AT_HWCAP)), int(getauxval(AT_HWCAP2)))


def check_platform(core: str | None) -> int:
    features = cpu_features() if platform.machine() == "aarch64" else set()
    libc, libc_version = platform.libc_ver()
    print(
        f"{platform.machine()}, Python {platform.python_version()} ({sys.executable}), "
        f"{libc} {libc_version}"
    )
    print(f"CPU features: {' '.join(sorted(features)) or 'none read'}")
    if platform.machine() != "aarch64":
        print("not aarch64")
        return 1
    if core is not None:
        beyond = beyond_core(features, core)
        if beyond:
            print(f"not a {core}: it has {' '.join(sorted(beyond))} (QEMU_CPU not in effect?)")
            return 1
        print(f"no feature beyond what a {core} has")
    return 0


def runs_on_aarch64(filename: str) -> bool:
    """A wheel's file name: one of its platform tags is any or an aarch64 one."""
    platforms = filename.removesuffix(".whl").split("-")[-1].split(".")
    return any(tag == "any" or tag.endswith("_aarch64") for tag in platforms)


def check_wheels(report_path: Path, venvs: list[Path]) -> int:
    report: dict[str, Any] = json.loads(report_path.read_text())
    wheels, problems, binary = 0, [], []
    for item in report["install"]:
        name = item["metadata"]["name"]
        version = item["metadata"]["version"]
        url: str = item["download_info"]["url"]
        if url.startswith("file:"):
            continue  # the project itself, from the checkout
        filename = url.rsplit("/", 1)[-1]
        if not filename.endswith(".whl"):
            problems.append(
                f"{name} {version}: no wheel for this platform, pip would build {filename}"
            )
        elif not runs_on_aarch64(filename):
            problems.append(f"{name} {version}: {filename} is not an aarch64 wheel")
        else:
            wheels += 1
            if not filename.removesuffix(".whl").endswith("-any"):
                binary.append(name)
    for venv in venvs:
        for wheel in sorted(venv.glob("lib/python3*/site-packages/*.dist-info/WHEEL")):
            tags = [
                line.split(":", 1)[1].strip()
                for line in wheel.read_text().splitlines()
                if line.startswith("Tag:")
            ]
            if any(tag.endswith("-linux_aarch64") for tag in tags):
                problems.append(f"{wheel.parent.name} in {venv}: compiled here ({', '.join(tags)})")
    print(
        f"{wheels} packages, every one a wheel for aarch64 or for any platform"
        if not problems
        else f"{wheels} packages as aarch64 wheels; {len(problems)} problem(s):"
    )
    for problem in problems:
        print(f"  {problem}")
    if binary:
        print(f"{len(binary)} of them compiled for aarch64: {', '.join(sorted(binary))}")
    return 1 if problems else 0


def apt_uri(sources: dict[str, str], suite: str) -> str | None:
    """The first archive that apt's sources (file name: its text; ``.list`` one-line and
    ``.sources`` deb822 files) name for ``suite``; other files are not apt's (a
    ``.disabled`` one, say)."""
    for name, text in sources.items():
        if name.endswith(".list"):
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] != ["deb"]:
                    continue
                words = words[1:]
                if words and words[0].startswith("["):  # options: [arch=arm64 signed-by=...]
                    while words and not words[0].endswith("]"):
                        words = words[1:]
                    words = words[1:]
                if len(words) >= 2 and words[1] == suite:
                    return words[0]
        elif name.endswith(".sources"):
            for stanza in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if (
                    "deb" in fields.get("types", "").split()
                    and fields.get("enabled", "yes").lower() != "no"
                    and suite in fields.get("suites", "").split()
                    and fields.get("uris")
                ):
                    return fields["uris"].split()[0]
    return None


def host_apt_sources(etc: Path = Path("/etc/apt")) -> dict[str, str]:
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    return {str(path): path.read_text() for path in files if path.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pi_check", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    platform_ = commands.add_parser("platform", help="machine, Python, glibc, CPU features")
    platform_.add_argument("core", nargs="?", choices=sorted(CORES))
    wheels = commands.add_parser("wheels", help="every dependency came as an aarch64 wheel")
    wheels.add_argument("report", type=Path)
    wheels.add_argument("venvs", type=Path, nargs="*")
    mirror = commands.add_parser("mirror", help="the archive this machine's apt uses for SUITE")
    mirror.add_argument("suite")
    turn = commands.add_parser("turn", help="a daemon turn: wake word, Opus, echo cancellation")
    turn.add_argument("source", type=Path)
    turn.add_argument("--echo-cancellation", action="store_true")
    cost = commands.add_parser(
        "aec-cost", help="CPU per audio second: echo cancellation, the wake word, Opus"
    )
    cost.add_argument("source", type=Path)
    args = parser.parse_args(argv)
    match args.command:
        case "platform":
            return check_platform(args.core)
        case "wheels":
            return check_wheels(args.report, args.venvs)
        case "mirror":
            uri = apt_uri(host_apt_sources(), args.suite)
            if uri is None:
                print(f"no apt source for {args.suite} in /etc/apt", file=sys.stderr)
                return 1
            print(uri)
            return 0
        case "aec-cost":
            return run_costs(args.source)
        case _:
            return run_turn(args.source, echo_cancellation=args.echo_cancellation)


REPLY_LOUD_S = 7.18
"""How much of the simulator's reply carries sound (as tests/test_real_audio.py counts it)."""


def run_turn(source: Path, *, echo_cancellation: bool) -> int:
    import coze_edge  # before the checkout is on sys.path: the installed package

    sys.path.append(str(source.resolve()))  # after site-packages: tests.support only
    import asyncio

    return asyncio.run(_turn(Path(coze_edge.__file__).parent, echo_cancellation))


def run_costs(source: Path) -> int:
    """CPU seconds per audio second of the parts that run on every captured block, on the
    bundled wake-word recording: what decides whether a turn keeps real time."""
    import time

    import coze_edge

    sys.path.append(str(source.resolve()))
    from coze_edge.adapters.apm import AudioProcessor
    from coze_edge.adapters.opus import OpusEncoder
    from coze_edge.adapters.wakeword import WakeWordDetector
    from coze_edge.adapters.wav import read_wav_as
    from coze_edge.core.audio import CAPTURE
    from tests.support.data import DATA

    print(f"coze_edge {Path(coze_edge.__file__).parent}")
    pcm = read_wav_as(DATA / "wake-okay-nabu-then-question.wav", CAPTURE)
    block, frame = CAPTURE.frame_bytes(60), CAPTURE.frame_bytes(20)
    seconds = len(pcm) / CAPTURE.frame_bytes(1000)

    def wake_word() -> None:
        detector = WakeWordDetector("okay_nabu")
        for start in range(0, len(pcm), block):
            detector.process(pcm[start : start + block])

    def echo_cancellation() -> None:
        processor = AudioProcessor()
        for start in range(0, len(pcm) // block * block, block):
            processor.process_render(pcm[start : start + block], CAPTURE.rate)
            processor.process_capture(pcm[start : start + block])

    def opus() -> None:
        encoder = OpusEncoder()
        for start in range(0, len(pcm) // frame * frame, frame):
            encoder.encode(pcm[start : start + frame])

    for name, part in (
        ("echo cancellation", echo_cancellation),
        ("wake word", wake_word),
        ("Opus encoding", opus),
    ):
        part()  # once to warm up (an emulator translates the code on its first run)
        started = time.process_time()
        part()
        print(f"{name}: {(time.process_time() - started) / seconds * 1000:.0f} ms CPU per s")
    return 0


def loud_seconds(raw: bytes, rate: int = 24000, threshold: float = 300.0) -> float:
    """How much of a mono s16le recording carries sound (10 ms windows above ``threshold``)."""
    import numpy as np

    samples = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float64)
    step = rate // 100
    windows = samples[: len(samples) // step * step].reshape(-1, step)
    return float(np.sum(np.sqrt(np.mean(windows**2, axis=1)) > threshold)) / 100


async def _turn(package: Path, echo_cancellation: bool) -> int:
    import asyncio
    import tempfile

    from coze_edge.adapters.apm import AudioProcessor
    from coze_edge.adapters.audio_io import Microphone, Speaker
    from coze_edge.core.status import State
    from coze_edge.daemon import open_audio
    from coze_edge.simulator import Simulator
    from tests.support.daemon import daemon_config, running_daemon
    from tests.support.data import DATA
    from tests.support.pulseaudio import pulse_server

    print(f"coze_edge {package}")
    spoken = DATA / "wake-okay-nabu-then-question.wav"
    opened: list[tuple[Microphone, Speaker]] = []
    with tempfile.TemporaryDirectory(prefix="pi-check-turn-") as tmp:
        state_dir = Path(tmp)
        with pulse_server(state_dir / "pulse", echo_path=echo_cancellation) as pulse:
            async with Simulator(reply_speed=4.0) as sim:
                config = daemon_config(
                    sim,
                    state_dir,
                    audio={
                        "backend": "sounddevice",
                        "input_device": "pulse",
                        "output_device": "pulse",
                        "codec": "opus",
                        "echo_cancellation": echo_cancellation,
                    },
                    wake={"word": "okay_nabu"},
                )

                def audio() -> tuple[Microphone, Speaker]:
                    opened.append(open_audio(config))
                    return opened[-1]

                async with running_daemon(config, audio=audio) as run:
                    await run.wait(lambda: run.when(State.IDLE) is not None, 60)
                    recorder = pulse.record_speaker()
                    player = pulse.play_into_mic(spoken)
                    await run.wait(lambda: run.when(State.SPEAKING) is not None, 60)
                    speaking = run.when(State.SPEAKING)
                    assert speaking is not None
                    await run.wait(lambda: run.when(State.IDLE, after=speaking) is not None, 60)
                    await asyncio.to_thread(player.wait)
                    played = await asyncio.to_thread(recorder.stop)
                    conversation = run.daemon.conversation
                    assert conversation is not None
                    latency = conversation.metrics.latency
                    states = [state for _, state, _ in run.states]
                    events = [event["type"] for event in run.events]
    [connection] = sim.connections
    update = next(f["data"] for f in connection.received if f.get("event_type") == "chat.update")
    codec = update.get("input_audio", {}).get("codec")
    heard_s = len(connection.heard) / 32000
    processor = getattr(opened[0][0].on_capture, "__self__", None) if opened else None
    after_reply = states[states.index(State.SPEAKING) :]
    checks = {
        "wake word heard": "wake_word" in events,
        f"uplink codec {codec}, {heard_s:.2f} s of speech decoded": codec == "opus"
        and heard_s >= 1.0,
        "one turn": events.count("turn") == 1
        and connection.event_types().count("input_audio_buffer.complete") == 1,
        f"reply played whole ({loud_seconds(played):.2f} s loud)"
        + (" through the echo path" if echo_cancellation else ""): (
            loud_seconds(played) >= REPLY_LOUD_S - 0.3
            and State.LISTENING not in after_reply
            and "conversation.chat.cancel" not in connection.event_types()
        ),
    }
    if echo_cancellation:
        checks["echo cancellation on the capture, fed with the reply"] = (
            isinstance(processor, AudioProcessor)
            and processor.echo_cancellation
            and processor.fresh_starts >= 1
        )
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(
        "latency (max): "
        + ", ".join(
            f"{name} {max(values) * 1000:.0f} ms" for name, values in latency.items() if values
        )
    )
    print(f"states: {' '.join(state.value for state in states)}; events: {' '.join(events)}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
