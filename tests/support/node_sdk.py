"""
The official Node.js SDK (``@coze/api``, pinned in tests/node/package.json and installed
there by ``scripts/test`` with ``npm ci``) as a second reference client of the simulator:
:class:`NodeRun` runs one command of tests/node/coze-sdk.mjs as a subprocess and reads the
JSON documents it prints; :func:`sdk_declarations` reads the SDK's own ``.d.ts`` files.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

from tests.support.dts import Declarations
from tests.support.timing import MS

NODE_DIR: Final = Path(__file__).parents[1] / "node"
SDK: Final = NODE_DIR / "node_modules" / "@coze" / "api"
SDK_TYPES: Final = SDK / "dist" / "types"
SDK_VERSION: Final = "1.3.9"


def sdk_installed() -> Path:
    """The SDK's folder; an error saying how to install it when it is not there."""
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed (scripts/test installs nodejs when root)")
    manifest = SDK / "package.json"
    if not manifest.is_file():
        raise RuntimeError(f"@coze/api is not installed in {NODE_DIR}: run scripts/test (npm ci)")
    version = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    if version != SDK_VERSION:
        raise RuntimeError(f"@coze/api {version} is installed, the tests need {SDK_VERSION}")
    return SDK


@functools.cache
def sdk_declarations() -> Declarations:
    """The SDK's declared types: the WebSocket events (``CreateChatWsRes`` is the union of
    what its chat client receives), the voice list and the OAuth answers."""
    sdk_installed()
    return Declarations.read(
        SDK_TYPES / name
        for name in (
            "resources/websockets/types.d.ts",
            "resources/websockets/chat/index.d.ts",
            "resources/audio/voices/voices.d.ts",
            "auth.d.ts",
        )
    )


class NodeRun:
    """One run of coze-sdk.mjs: its documents as they come, and its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.documents: list[dict[str, Any]] = []

    async def next(self, within_ms: float = 20000) -> dict[str, Any]:
        """The next document it prints (TimeoutError, or EOFError with its stderr, if none)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(within_ms * MS):
            line = await self.process.stdout.readline()
        if not line:
            raise EOFError(f"coze-sdk.mjs ended: {await self._stderr()}")
        document = json.loads(line)
        assert isinstance(document, dict)
        self.documents.append(document)
        return document

    async def next_with(self, key: str, within_ms: float = 20000) -> Any:
        """The value of the next document that has ``key``."""
        while key not in (document := await self.next(within_ms)):
            pass
        return document[key]

    async def all(self, within_ms: float = 30000) -> list[dict[str, Any]]:
        """Every document up to its exit, which must be clean."""
        try:
            while True:
                await self.next(within_ms)
        except EOFError:
            pass
        async with asyncio.timeout(within_ms * MS):
            code = await self.process.wait()
        assert code == 0, await self._stderr()
        return self.documents

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode(errors="replace")


@asynccontextmanager
async def node_sdk(command: str, **options: Any) -> AsyncIterator[NodeRun]:
    """coze-sdk.mjs ``command`` with ``options``, running for the block; killed if it is
    still running when the block ends."""
    sdk_installed()
    process = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "coze-sdk.mjs"),
        command,
        json.dumps(options),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeRun(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def run_node(command: str, **options: Any) -> list[dict[str, Any]]:
    """Every document of a whole run of coze-sdk.mjs ``command``."""
    async with node_sdk(command, **options) as run:
        return await run.all()
