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


def test_sandbox_exposure_is_at_most_4(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit's exposure 4.0 or lower."""
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
    assert exposure <= 4.0


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
