"""
Binding devices to a vendor's Coze custom channel (``POST /v1/connectors/{id}/user_configs``):
the device itself once per (connector, device id), or many from a CSV for provisioning.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import TextIO

from coze_edge.adapters.coze_http import CozeHttp
from coze_edge.adapters.token_store import BindingStore
from coze_edge.config import Config
from coze_edge.core.identity import is_int64_id
from coze_edge.credentials import TokenSource
from coze_edge.errors import EXIT_CONFIG, CozeAPIError, CozeUnavailable, PermissionDeniedError

log = logging.getLogger(__name__)

PERMISSION_HINT = (
    "the token needs the bindConnectorConfig permission, and Coze must have enabled "
    "device binding on this channel (ask your Coze business manager)"
)


def _explain(exc: CozeAPIError) -> str:
    if isinstance(exc, PermissionDeniedError):
        return f"{exc.describe()}: {PERMISSION_HINT}"
    return exc.describe()


async def ensure_bound(config: Config, http: CozeHttp, tokens: TokenSource) -> None:
    """Bind this device once; remembered in state_dir. Never stops the daemon."""
    connector = config.device.connector_id
    if not connector:
        return
    store = BindingStore(config.state_dir)
    if store.is_bound(connector, config.device.id):
        return
    device = config.device
    try:
        await http.bind(
            await tokens.token(),
            connector,
            device.id,
            device.name,
            user_id=device.bind_user_id,
            key=device.bind_key,
        )
    except CozeAPIError as exc:
        log.error("! binding to channel %s failed: %s", connector, _explain(exc))
        return
    except CozeUnavailable as exc:
        # Retried under the supervisor's backoff: a device must not stay unbound for
        # want of a restart.
        raise CozeUnavailable(f"binding to channel {connector} postponed: {exc}") from exc
    store.add(connector, config.device.id)
    log.info("bound device %s to channel %s", config.device.id, connector)


async def bind_csv(
    path: Path, config: Config, http: CozeHttp, tokens: TokenSource, *, out: TextIO
) -> int:
    """One report line per row; 0 all bound, 1 some failed, 78 unusable file."""
    connector = config.device.connector_id
    if not connector:
        print("coze-edge bind: set device.connector_id (the custom channel id)", file=out)
        return EXIT_CONFIG
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        print(f"coze-edge bind: cannot read {path}: {exc}", file=out)
        return EXIT_CONFIG
    if not rows or "device_id" not in header or "name" not in header:
        print(f"coze-edge bind: {path} needs a header row device_id,name and rows", file=out)
        return EXIT_CONFIG
    token = await tokens.token()
    failed = 0
    for line, row in enumerate(rows, start=2):
        device_id, name = (row.get("device_id") or "").strip(), (row.get("name") or "").strip()
        if not is_int64_id(device_id) or not name:
            print(
                f"line {line}: skipped: device_id must be a positive int64, name non-empty",
                file=out,
            )
            failed += 1
            continue
        try:
            await http.bind(
                token,
                connector,
                device_id,
                name,
                user_id=config.device.bind_user_id,
                key=config.device.bind_key,
            )
        except CozeAPIError as exc:
            print(f"line {line}: {device_id}: error: {_explain(exc)}", file=out)
            failed += 1
            continue
        print(f"line {line}: {device_id}: bound as {name!r}", file=out)
    print(f"{len(rows) - failed} of {len(rows)} bound to channel {connector}", file=out)
    return 1 if failed else 0


async def bind_command(config: Config, *, csv: Path | None, out: TextIO = sys.stdout) -> int:
    """``coze-edge bind [--csv FILE]``."""
    from coze_edge.login import token_source_for

    async with CozeHttp(
        config.coze.api_base,
        connect_timeout=config.coze.connect_timeout_s,
        read_timeout=config.coze.read_timeout_s,
    ) as http:
        tokens = token_source_for(config, http)
        if csv is not None:
            return await bind_csv(csv, config, http, tokens, out=out)
        if not config.device.connector_id:
            print("coze-edge bind: set device.connector_id (the custom channel id)", file=out)
            return EXIT_CONFIG
        try:
            await http.bind(
                await tokens.token(),
                config.device.connector_id,
                config.device.id,
                config.device.name,
                user_id=config.device.bind_user_id,
                key=config.device.bind_key,
            )
        except CozeAPIError as exc:
            print(f"coze-edge bind: {_explain(exc)}", file=out)
            return 1
        BindingStore(config.state_dir).add(config.device.connector_id, config.device.id)
        print(f"bound device {config.device.id} to channel {config.device.connector_id}", file=out)
        return 0
