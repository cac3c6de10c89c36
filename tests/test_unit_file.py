"""The systemd unit: systemd-analyze finds nothing to say about it, and it is tightly sandboxed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

UNIT = Path(__file__).parent.parent / "systemd" / "coze-edge.service"


def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart on a binary that exists here (verify checks it)."""
    copy = tmp_path / "coze-edge.service"
    copy.write_text(UNIT.read_text().replace("/opt/coze-edge/venv/bin/coze-edge", "/bin/true"))
    return copy


def test_systemd_analyze_verify_says_nothing(tmp_path: Path) -> None:
    """verify exits 0 even on parse errors, so any output about the unit is a failure."""
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "coze-edge" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.returncode == 0


def test_sandbox_exposure_is_at_most_1_6(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit's exposure 1.6 or lower (what it was before
    the resource limits came: they must not cost any of the sandbox)."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)

    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= 1.6


def test_the_unit_keeps_the_contract() -> None:
    """Type=notify, the watchdog, and no restart on exit 77/78."""
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "RestartPreventExitStatus=77 78",
        "StateDirectory=coze-edge",
        "RuntimeDirectory=coze-edge",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ):
        assert line in text.splitlines(), line


def test_resources_are_capped_with_the_measured_headroom() -> None:
    """MemoryMax, TasksMax and LimitNOFILE are set, at least twice the peaks `scripts/limits`
    measured in a run with PulseAudio, echo cancellation and the wake word, and a flooded
    ctl socket.
    (A value systemd cannot parse is caught by the verify test above.)"""
    lines = UNIT.read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if "=" in line and line[0] != "#")
    peak_rss_mib, peak_tasks_4_cores, peak_fds_flooded = 101.4, 20, 145

    assert settings["MemoryMax"].endswith("M")
    assert int(settings["MemoryMax"][:-1]) >= 2 * peak_rss_mib
    assert int(settings["TasksMax"]) >= 2 * peak_tasks_4_cores
    assert int(settings["LimitNOFILE"]) >= 2 * peak_fds_flooded
    assert "peak RSS 101.4 MiB" in UNIT.read_text()  # the figures are stated beside them
