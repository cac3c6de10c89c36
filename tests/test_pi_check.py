"""The pure parts of scripts/pi_check.py (the rest runs in scripts/pi-check's arm64 root)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts.pi_check import (
    HWCAP_NAMES,
    apt_uri,
    beyond_core,
    check_wheels,
    hwcap_features,
    runs_on_aarch64,
)

# AT_HWCAP (and AT_HWCAP2) as qemu-aarch64 7.2 shows them to a process in the root
# (LD_SHOW_AUXV=1 /bin/true under QEMU_CPU=...).
QEMU_CORTEX_A53 = 0x8FB  # fp asimd aes pmull sha1 sha2 crc32 cpuid
QEMU_CORTEX_A76 = 0x119FFB  # and atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp
QEMU_MAX, QEMU_MAX_2 = 0xECFFFFFB, 0x7F877FFF  # qemu's default: SVE, SHA-512, PAC...


def test_hwcap_bits_are_named_in_the_kernels_order() -> None:
    """Bit 0 is fp, bit 1 asimd, bit 22 sve (arch/arm64/include/uapi/asm/hwcap.h)."""
    assert hwcap_features(0b11) == {"fp", "asimd"}
    assert hwcap_features(1 << 22) == {"sve"}
    assert hwcap_features(QEMU_CORTEX_A53) == {
        "fp",
        "asimd",
        "aes",
        "pmull",
        "sha1",
        "sha2",
        "crc32",
        "cpuid",
    }
    assert hwcap_features(0) == set()


def test_a_bit_past_the_table_still_counts_as_a_feature() -> None:
    """A newer kernel's feature, and any AT_HWCAP2 bit, is named by its number, so it is
    never silently dropped."""
    assert hwcap_features(1 << len(HWCAP_NAMES)) == {f"bit{len(HWCAP_NAMES)}"}
    assert hwcap_features(0b1, 0b10) == {"fp", "hwcap2:bit1"}


@pytest.mark.parametrize("core", ["cortex-a53", "cortex-a72", "cortex-a76"])
def test_qemus_model_of_a_pis_core_is_that_core(core: str) -> None:
    """The features qemu's cortex-a53 shows are within every Pi's core."""
    assert beyond_core(hwcap_features(QEMU_CORTEX_A53), core) == set()


def test_qemus_default_cpu_is_no_pi() -> None:
    """qemu's max CPU shows SVE and more, which no Raspberry Pi has: it is refused."""
    beyond = beyond_core(hwcap_features(QEMU_MAX, QEMU_MAX_2), "cortex-a76")
    assert {"sve", "sha512", "paca", "pacg", "hwcap2:bit1"} <= beyond  # bit 1: SVE2
    assert "asimddp" not in beyond  # the Pi 5's dot product is the a76's


def test_a_pi5s_features_are_beyond_a_pi4() -> None:
    """qemu's cortex-a76 (a Pi 5) has the dot product and more, which a Pi 4 lacks."""
    features = hwcap_features(QEMU_CORTEX_A76)
    assert beyond_core(features, "cortex-a76") == set()
    assert beyond_core(features, "cortex-a72") == {
        "atomics",
        "fphp",
        "asimdhp",
        "asimdrdm",
        "lrcpc",
        "dcpop",
        "asimddp",
    }


@pytest.mark.parametrize(
    ("filename", "runs"),
    [
        ("numpy-2.3.5-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl", True),
        ("pymicro_wakeword-2.5.0-py3-none-manylinux_2_35_aarch64.whl", True),
        ("soxr-1.0.0-cp311-cp311-musllinux_1_2_aarch64.whl", True),
        ("PyYAML-6.0.3-py3-none-any.whl", True),
        ("numpy-2.3.5-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", False),
        ("webrtcvad-2.0.10-cp311-cp311-linux_armv7l.whl", False),
        ("livekit-1.0.0-py3-none-macosx_11_0_arm64.whl", False),
    ],
)
def test_wheel_tags_that_run_on_a_64_bit_pi(filename: str, runs: bool) -> None:
    """Any of a wheel's platform tags (dot-separated) that is aarch64 or any will do."""
    assert runs_on_aarch64(filename) is runs


def report_item(name: str, url: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "version": "1.0"}, "download_info": {"url": url}}


def write_report(tmp_path: Path, *items: dict[str, Any]) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"version": "1", "install": list(items)}))
    return path


def test_a_report_of_aarch64_wheels_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wheels for aarch64 or any platform pass; the project itself (a file: URL) is skipped."""
    report = write_report(
        tmp_path,
        report_item("coze-edge", "file:///src/coze-edge"),
        report_item("numpy", "https://files/numpy-2.3.5-cp311-cp311-manylinux_2_28_aarch64.whl"),
        report_item("pyyaml", "https://files/PyYAML-6.0.3-py3-none-any.whl"),
    )

    assert check_wheels(report, []) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2 packages, every one a wheel for aarch64 or for any platform",
        "1 of them compiled for aarch64: numpy",
    ]


def test_a_source_only_package_and_a_locally_built_wheel_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pip would build an sdist; a wheel tagged linux_aarch64 in a venv was built here."""
    report = write_report(
        tmp_path,
        report_item("numpy", "https://files/numpy-2.3.5-cp311-cp311-manylinux_2_28_aarch64.whl"),
        report_item("webrtcvad", "https://files/webrtcvad-2.0.10.tar.gz"),
        report_item("other", "https://files/other-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
    )
    venv = tmp_path / "venv"
    built = venv / "lib/python3.11/site-packages/webrtcvad-2.0.10.dist-info"
    built.mkdir(parents=True)
    (built / "WHEEL").write_text(
        "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_aarch64\n"
    )
    fine = venv / "lib/python3.11/site-packages/numpy-2.3.5.dist-info"
    fine.mkdir(parents=True)
    (fine / "WHEEL").write_text("Tag: cp311-cp311-manylinux_2_28_aarch64\n")

    assert check_wheels(report, [venv]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "1 packages as aarch64 wheels; 3 problem(s):",
        "  webrtcvad 1.0: no wheel for this platform, pip would build webrtcvad-2.0.10.tar.gz",
        "  other 1.0: other-1.0-cp311-cp311-manylinux_2_28_x86_64.whl is not an aarch64 wheel",
        f"  webrtcvad-2.0.10.dist-info in {venv}: compiled here (cp311-cp311-linux_aarch64)",
        "1 of them compiled for aarch64: numpy",
    ]


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_archive_comes_from_a_deb822_file() -> None:
    """Debian 12's own format: the suite's stanza, the first of its URIs."""
    sources = {"/etc/apt/sources.list.d/debian.sources": DEB822}
    assert apt_uri(sources, "bookworm") == "http://deb.debian.org/debian"
    assert apt_uri(sources, "bookworm-security") == "http://deb.debian.org/debian-security"
    assert apt_uri(sources, "bullseye") is None


def test_the_archive_comes_from_a_one_line_list() -> None:
    """Comments, deb-src and options in brackets are passed over."""
    text = (
        "# deb http://old.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian"
        " bookworm main contrib\n"
    )
    assert apt_uri({"/etc/apt/sources.list": text}, "bookworm") == "http://mirror.example/debian"


def test_disabled_sources_and_other_files_are_not_apts() -> None:
    """A disabled stanza and a file apt does not read (not .list or .sources) are skipped;
    another suite's archive (a vendor's "nodistro") is not taken for the wanted one."""
    disabled = DEB822.replace("Types: deb\n", "Types: deb\nEnabled: no\n", 1)
    sources = {
        "/etc/apt/sources.list.d/a.sources": disabled,
        "/etc/apt/sources.list.d/b.list.disabled-by-farm": "deb http://farm.example bookworm main",
        "/etc/apt/sources.list.d/nodesource.list": "deb https://deb.nodesource.com nodistro main",
    }
    assert apt_uri(sources, "bookworm") is None
    assert apt_uri(sources, "nodistro") == "https://deb.nodesource.com"
