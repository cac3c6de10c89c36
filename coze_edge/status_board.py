"""
The one place the device's published state is made: every component reports its own
part (the conversation its state and Coze's refusal, the token keeper a pending login,
the supervisor a lost sound card or an unreachable Coze, a command the controls), and
:class:`StatusBoard` derives the :class:`DeviceStatus` from all of them
(:meth:`StatusParts.status`) and hands each change to the log, systemd, the state hook,
MQTT and ``ctl status``.

It also owns the controls (mute, volume, wake word, turn detection): they are persisted at
every change, so a device muted from Home Assistant comes back muted after a power cut.

And it keeps its part of the :class:`Diagnostics` (the publisher adds its own): the Coze
reconnects, counted where ``coze_connected`` falls, and the audio health.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from coze_edge.adapters.stores import ControlsStore
from coze_edge.core.status import (
    Controls,
    DeviceStatus,
    Diagnostics,
    LoginPrompt,
    State,
    StatusParts,
)
from coze_edge.latest import Latest
from coze_edge.logs import redact

log = logging.getLogger(__name__)


class StatusBoard:
    def __init__(
        self,
        controls: ControlsStore,
        *,
        default_volume: int,
        on_change: Callable[[DeviceStatus], None] = lambda _: None,
        version: str = "",
        started_at: datetime | None = None,
    ) -> None:
        self._store = controls
        saved = controls.load()
        initial = saved or replace(controls.configured, volume=default_volume)
        if saved is not None and saved.muted:
            log.info("muted (as it was left)")
        configured = controls.configured
        for what, value, config_value in (
            ("wake word", initial.wake_word, configured.wake_word),
            ("turn detection", initial.turn_detection, configured.turn_detection),
        ):
            if value != config_value:
                log.info("%s %s (as chosen since; the config says %s)", what, value, config_value)
        self._parts = StatusParts(controls=initial)
        self._on_change = on_change
        self._unsaved = False
        self.status = Latest[DeviceStatus]()
        """The newest published state (MQTT, ``ctl status``)."""
        self.login = Latest[LoginPrompt | None](None)
        """The pending device login, if any (MQTT ``login`` topic, ``ctl status``)."""
        self._login_changed = asyncio.Event()
        self.status.set(self._parts.status())
        self.diagnostics = Latest[Diagnostics]()
        """Version, start, reconnects, audio health, last error (MQTT ``diagnostics``); the
        board and the publisher each replace only their own fields."""
        self.diagnostics.set(Diagnostics(version, started_at or datetime.now(UTC)))
        self._mic_problem: str | None = None

    @property
    def parts(self) -> StatusParts:
        return self._parts

    @property
    def controls(self) -> Controls:
        return self._parts.controls

    # ------------------------------------------------------------------ the parts

    def set_controls(self, controls: Controls) -> None:
        if controls == self._parts.controls:
            return
        self._save(controls)
        self._apply(replace(self._parts, controls=controls))

    def conversation_state(self, state: State, coze_fault: str | None) -> None:
        self._apply(replace(self._parts, state=state, coze_fault=coze_fault))

    def login_prompt(self, prompt: LoginPrompt | None) -> None:
        """From the device login: a code to show, or None once logged in."""
        if prompt is not None:
            log.warning(
                "not logged in: open %s and enter the code that `coze-edge ctl status` "
                "(or the MQTT login topic) shows; it expires %s",
                prompt.verification_url.split("?")[0],
                prompt.expires_at.isoformat(timespec="seconds"),
            )
        elif self.login.get_nowait() is not None:
            log.info("logged in")
        self.login.set(prompt)
        changed, self._login_changed = self._login_changed, asyncio.Event()
        changed.set()
        self._apply(replace(self._parts, login_pending=prompt is not None))

    async def login_changed(self) -> LoginPrompt | None:
        """Wait for the next change of the pending login (any number of waiters)."""
        await self._login_changed.wait()
        return self.login.get_nowait()

    def audio_fault(self, fault: str | None) -> None:
        self._apply(replace(self._parts, audio_fault=fault))
        self._audio_health()

    def microphone_problem(self, problem: str | None) -> None:
        """From the daemon's health check: why the microphone delivers nothing, or None."""
        if problem != self._mic_problem:
            self._mic_problem = problem
            self._audio_health()

    def auth_fault(self, fault: str | None) -> None:
        """From the token keeper: why the credentials are refused, or None once accepted."""
        self._apply(replace(self._parts, auth_fault=fault))

    def connect_problem(self, problem: str | None) -> None:
        self._apply(replace(self._parts, connect_problem=problem))

    # ------------------------------------------------------------------ inside

    def _save(self, controls: Controls) -> None:
        try:
            self._store.save(controls)
        except OSError as exc:
            if not self._unsaved:
                log.error(
                    "! cannot save mute and volume to %s (%s): they last until a restart",
                    self._store.path,
                    exc.strerror or exc,
                )
            self._unsaved = True
            return
        if self._unsaved:
            log.info("mute and volume saved to %s", self._store.path)
        self._unsaved = False

    def _audio_health(self) -> None:
        fault = self._parts.audio_fault
        problem = fault if fault is not None else self._mic_problem
        current = self.diagnostics.get_nowait()
        if problem != current.audio_problem:
            self.diagnostics.set(replace(current, audio_problem=problem))

    def _apply(self, parts: StatusParts) -> None:
        if parts == self._parts:
            return
        before = self.status.get_nowait()
        self._parts = parts
        status = parts.status()
        if status.detail:
            # Coze's or a library's words (a refused handshake quotes the server's answer):
            # masked once here for the log, MQTT, ``ctl status`` and the state hook.
            status = replace(status, detail=redact(status.detail))
        if status == before:
            return
        if before.coze_connected and not status.coze_connected:
            current = self.diagnostics.get_nowait()
            self.diagnostics.set(replace(current, coze_reconnects=current.coze_reconnects + 1))
        if status.state is not before.state or status.detail != before.detail:
            detail = f": {status.detail}" if status.detail else ""
            muted = " (muted)" if status.muted else ""
            if status.state is State.ERROR:
                log.warning("! state: %s%s%s", status.state.value, muted, detail)
            else:
                log.info("state: %s%s%s", status.state.value, muted, detail)
        self.status.set(status)
        self._on_change(status)
