"""
The config's media files, checked when the config is loaded (``check-config`` and every
start): the custom wake word model (``wake.model``) and the custom earcons
(``audio.earcon_files``). A file this user may not read is judged by its ``stat`` alone:
the daemon may run as another user, and checks it again when it loads it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from coze_edge.config.checks import Problem
from coze_edge.config.files import regular_file_problem
from coze_edge.config.schema import Config
from coze_edge.core.earcons import KINDS


def media_problems(config: Config) -> Iterator[Problem]:
    model = config.wake.model
    if model is not None:
        if _unreadable(model):
            yield from _by_stat("wake.model", model)
        else:
            # Imported here: they load numpy, TensorFlow Lite's library, soxr.
            from coze_edge.adapters.wake_model import WakeModelError, load_wake_model

            try:
                load_wake_model(model)
            except WakeModelError as exc:
                yield "wake.model", str(exc)
    for kind, name in config.audio.earcon_files.items():
        path = Path(name)
        if kind not in KINDS or not name.strip():
            continue  # the section's own check says so
        if _unreadable(path):
            yield from _by_stat(f"audio.earcon_files.{kind}", path)
            continue
        from coze_edge.adapters.earcon_files import EarconFileError, check_earcon

        try:
            check_earcon(path)
        except EarconFileError as exc:
            yield f"audio.earcon_files.{kind}", str(exc)


def _unreadable(path: Path) -> bool:
    return path.exists() and not os.access(path, os.R_OK)


def _by_stat(key: str, path: Path) -> Iterator[Problem]:
    if problem := regular_file_problem(path, limit=32 * 1024 * 1024):
        yield key, f"{path} {problem}"
