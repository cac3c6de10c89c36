"""scripts/install against a throwaway root: layout, modes, idempotence, uninstall."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "scripts" / "install"
OFFLINE = ["--no-apt", "--no-systemctl", "--no-user", "--no-pip"]


def install(prefix: Path, *args: str) -> str:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--prefix", str(prefix), *OFFLINE, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_install_lays_out_venv_config_and_unit(tmp_path: Path) -> None:
    """A venv under /opt, the example config 0640 under /etc, the unit in systemd's dir."""
    out = install(tmp_path)

    assert (tmp_path / "opt/coze-edge/venv/bin/python").exists()
    config = tmp_path / "etc/coze-edge/config.yaml"
    assert config.read_text() == (ROOT / "config/coze-edge.example.yaml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    unit = tmp_path / "etc/systemd/system/coze-edge.service"
    assert unit.read_text() == (ROOT / "systemd/coze-edge.service").read_text()
    assert "wrote" in out


def test_a_second_run_keeps_the_users_config(tmp_path: Path) -> None:
    """Running again (an upgrade) never overwrites the edited config."""
    install(tmp_path)
    config = tmp_path / "etc/coze-edge/config.yaml"
    config.write_text("coze:\n  bot_id: '7'\n")

    out = install(tmp_path)

    assert config.read_text() == "coze:\n  bot_id: '7'\n"
    assert "kept" in out


def test_uninstall_keeps_config_and_state_unless_purged(tmp_path: Path) -> None:
    """--uninstall removes the unit and venv; --purge also the config and state."""
    install(tmp_path)
    (tmp_path / "var/lib/coze-edge/token.json").write_text("{}")

    install(tmp_path, "--uninstall")
    assert not (tmp_path / "etc/systemd/system/coze-edge.service").exists()
    assert not (tmp_path / "opt/coze-edge").exists()
    assert (tmp_path / "etc/coze-edge/config.yaml").exists()
    assert (tmp_path / "var/lib/coze-edge").exists()

    install(tmp_path, "--uninstall", "--purge")
    assert not (tmp_path / "etc/coze-edge").exists()
    assert not (tmp_path / "var/lib/coze-edge").exists()


def test_a_permissive_umask_leaves_nothing_writable_by_others(tmp_path: Path) -> None:
    """Run from a root shell with umask 000, the installer still makes nothing under the
    root group- or world-writable, and the config stays 0640 (it sets its own umask)."""
    permissive = ["bash", "-c", 'umask 000 && exec bash "$@"', "install"]
    result = subprocess.run(
        [*permissive, str(SCRIPT), "--prefix", str(tmp_path), *OFFLINE],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    writable = [
        f"{path.relative_to(tmp_path)} {stat.filemode(path.lstat().st_mode)}"
        for path in [tmp_path / "etc", tmp_path / "opt", *tmp_path.glob("**/*")]
        if not path.is_symlink() and path.lstat().st_mode & 0o022
    ]
    assert writable == []
    config = tmp_path / "etc/coze-edge/config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_install_puts_coze_edge_on_path_and_makes_the_state_directory(tmp_path: Path) -> None:
    """/usr/local/bin/coze-edge links into the venv (relatively, so inside the same root);
    /var/lib/coze-edge exists, 0700, before the first start; --uninstall removes the link
    and keeps the state."""
    out = install(tmp_path)

    link = tmp_path / "usr/local/bin/coze-edge"
    assert link.is_symlink()
    assert link.resolve() == (tmp_path / "opt/coze-edge/venv/bin/coze-edge").resolve()
    state = tmp_path / "var/lib/coze-edge"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert f"linked {link}" in out

    install(tmp_path, "--uninstall")
    assert not link.is_symlink()
    assert state.is_dir()


def test_install_leaves_a_coze_edge_on_path_that_is_not_its_own(tmp_path: Path) -> None:
    """A /usr/local/bin/coze-edge that is a file of somebody else's is kept, and said so."""
    other = tmp_path / "usr/local/bin/coze-edge"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\necho mine\n")

    out = install(tmp_path)

    assert other.read_text() == "#!/bin/sh\necho mine\n"
    assert f"kept {other}: not ours" in out
