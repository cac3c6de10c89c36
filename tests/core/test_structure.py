"""The architecture's first rule, checked: the core does no I/O and reads no clock."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import coze_edge.core

DOES_IO = {
    # the clock, the operating system, the network, threads and processes
    *("time", "asyncio", "socket", "ssl", "select", "selectors", "signal", "threading"),
    *("subprocess", "os", "shutil", "pathlib", "tempfile", "io", "urllib", "http"),
    # the libraries the adapters wrap
    *("sounddevice", "websockets", "httpx", "aiohttp", "aiomqtt", "paho", "soxr"),
    *("webrtcvad", "livekit", "pymicro_wakeword", "ctypes", "yaml"),
}
OWN_ALLOWED = ("coze_edge.core", "coze_edge.errors")
"""The only parts of coze_edge the core may import."""


def core_modules() -> dict[str, Path]:
    """Every module under coze_edge/core, found by walking the package."""
    modules = {}
    for info in pkgutil.walk_packages(coze_edge.core.__path__, prefix="coze_edge.core."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None, info.name
        assert spec.origin is not None, info.name
        modules[info.name] = Path(spec.origin)
    return modules


def imported(path: Path) -> list[str]:
    """The absolute module names a source file imports (relative imports stay in core)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_the_walk_finds_every_core_module() -> None:
    """Each .py file under coze_edge/core is checked, new ones included."""
    folder = Path(coze_edge.core.__file__).parent
    on_disk = {
        ".".join(("coze_edge", "core", *path.relative_to(folder).with_suffix("").parts))
        for path in folder.rglob("*.py")
        if path.name != "__init__.py"
    }

    assert set(core_modules()) == on_disk


def test_the_core_does_no_io() -> None:
    """Nothing under coze_edge/core imports a module that does I/O or reads a clock."""
    offending = {
        name: sorted(roots)
        for name, path in core_modules().items()
        if (roots := {module.split(".")[0] for module in imported(path)} & DOES_IO)
    }

    assert offending == {}


def test_the_core_imports_only_the_core_and_the_errors() -> None:
    """The core never reaches out to the adapters, the drivers or the config."""
    outside = {
        name: sorted(own)
        for name, path in core_modules().items()
        if (
            own := [
                module
                for module in imported(path)
                if module.split(".")[0] == "coze_edge" and not module.startswith(OWN_ALLOWED)
            ]
        )
    }

    assert outside == {}
