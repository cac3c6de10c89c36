"""
The simulator as one server: REST and the /v1/chat WebSocket on one port, its lifecycle,
and the helpers tests use to drive it and read what it saw.

``go_down()`` models the network going away, as a device sees it: the port stops
listening, so a new connection is refused, and every open connection, HTTP keep-alive or
WebSocket, is dropped without a closing handshake (a WebSocket client sees 1006), its
unsent data lost. ``come_up()`` listens on the same port again (``SO_REUSEADDR``, so the
dropped connections' TIME_WAIT does not stand in the way); everything the simulator knew
(tokens, conversations, what it saw) is kept, as a real server's would be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from coze_edge.simulator.chat import ChatConnection, ChatEndpoint, ChatSettings
from coze_edge.simulator.conversations import Conversations
from coze_edge.simulator.faults import Faults
from coze_edge.simulator.jwt_apps import JwtGrant
from coze_edge.simulator.oauth import OAuth
from coze_edge.simulator.reply import RecordedReply
from coze_edge.simulator.rest import Rest, logid_middleware

log = logging.getLogger(__name__)


class Simulator:
    """Coze on loopback. ``async with Simulator() as sim:`` then point the client at it."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transcript: str = "今天天气真不错",
        pats: Iterable[str] = ("sim-pat",),
        access_token_ttl_s: int = 900,
        device_code_ttl_s: int = 300,
        poll_interval_s: int = 5,
        reply_speed: float = 6.0,
        published_bots: Iterable[str] | None = None,
        unpublished_bots: Iterable[str] = (),
        prologue: str | None = None,
        record_sent: bool = False,
    ) -> None:
        """
        ``pats``: the personal access tokens it accepts. ``reply_speed``: how many times
        faster than real time the reply's audio is sent (the real server: about 6).
        ``published_bots``: the bot ids published to the API channel (None: every bot id
        but the ``unpublished_bots``). A session for an unpublished bot is refused with
        error 4015, for a bot in neither list (one that does not exist) with 4006.
        ``prologue``: the bots' opening line (``need_play_prologue``). ``record_sent``:
        keep every frame sent in ``ChatConnection.sent`` (tests that check them).
        """
        self.host = host
        self.port = port
        """The port it listens on; the real one once started with ``port=0``."""
        self.faults = Faults()
        """The switches in effect, read as each request or frame is handled."""
        self._oauth = OAuth(
            pats=pats,
            faults=self._current_faults,
            api_base=lambda: self.api_base,
            access_token_ttl_s=access_token_ttl_s,
            device_code_ttl_s=device_code_ttl_s,
            poll_interval_s=poll_interval_s,
        )
        self._conversations = Conversations()
        self._rest = Rest(
            authorize=self._oauth.authorize,
            faults=self._current_faults,
            conversations=self._conversations,
        )
        self._chat = ChatEndpoint(
            settings=ChatSettings(
                transcript=transcript,
                reply_speed=reply_speed,
                published_bots=None if published_bots is None else frozenset(published_bots),
                unpublished_bots=frozenset(unpublished_bots),
                record_sent=record_sent,
                **({} if prologue is None else {"prologue": prologue}),
            ),
            reply=RecordedReply.load(),
            authorize=self._oauth.authorize,
            faults=self._current_faults,
            conversations=self._conversations,
        )
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    def _current_faults(self) -> Faults:
        return self.faults

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[logid_middleware])
        app.add_routes([*self._oauth.routes(), *self._rest.routes(), *self._chat.routes()])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self._listen()

    async def stop(self) -> None:
        await self._chat.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    @property
    def is_down(self) -> bool:
        """Whether it is started but not listening (after ``go_down()``)."""
        return self._runner is not None and self._site is None

    async def go_down(self) -> None:
        """The network goes away: stop listening, drop every open connection, and return
        once every chat session has ended."""
        if self._runner is None or self._site is None:
            raise RuntimeError("the simulator is not up")
        await self._site.stop()
        self._site = None
        assert self._runner.server is not None
        for connection in self._runner.server.connections:
            if connection.transport is not None:
                connection.transport.abort()  # at once, unsent data and all; no close frame
            connection.force_close()
        await self._chat.wait_all_closed()
        log.info("= down: %s refuses connections", self.api_base)

    async def come_up(self) -> None:
        """The network is back: listen on the same port again."""
        if self._runner is None or self._site is not None:
            raise RuntimeError("the simulator is not down")
        await self._listen()
        log.info("= up again at %s", self.api_base)

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site = site
        for address in self._runner.addresses:
            self.port = int(address[1])  # the real one, when asked for port 0
            break

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ what it saw

    @property
    def connections(self) -> list[ChatConnection]:
        """Every /v1/chat session, open or closed, in the order they opened."""
        return self._chat.connections

    @property
    def bindings(self) -> list[dict[str, Any]]:
        """Every accepted bind-device request: ``connector_id`` and the request body."""
        return self._rest.bindings

    @property
    def token_requests(self) -> int:
        """How many requests the token endpoint got (both grants, answered or refused)."""
        return self._oauth.token_requests

    @property
    def jwt_grants(self) -> list[JwtGrant]:
        """Every JWT grant accepted, in order: the app, the ``jti``, the duration asked,
        ``session_name`` and ``session_context.device_info``."""
        return self._oauth.jwt_apps.grants

    @property
    def jwt_refusals(self) -> list[str]:
        """Every JWT grant refused, as ``error: message``, in order."""
        return self._oauth.jwt_apps.refusals

    @property
    def pats(self) -> set[str]:
        """The personal access tokens it accepts."""
        return self._oauth.pats

    # ------------------------------------------------------------------ test helpers

    def register_jwt_app(self, app_id: str, kid: str, public_key_pem: str | bytes) -> None:
        """A JWT app (``iss`` ``app_id``) and one of its public keys (``kid``, the key's
        fingerprint in Coze's console), as its owner sets it up in Coze."""
        self._oauth.jwt_apps.register(app_id, kid, public_key_pem)

    def approve(self, user_code: str) -> None:
        """The person approves the device code (KeyError if no such code)."""
        self._oauth.approve(user_code)

    def deny(self, user_code: str) -> None:
        """The person denies the device code (KeyError if no such code)."""
        self._oauth.deny(user_code)

    def pending_user_codes(self) -> list[str]:
        """User codes issued and neither approved, denied nor expired."""
        return self._oauth.pending_user_codes()

    def known_conversations(self, bot_id: str) -> frozenset[str]:
        """The conversation ids a ``chat.update`` for ``bot_id`` may name: those issued for
        it (REST, or a session given none) and those created over REST without a bot."""
        return self._conversations.of(bot_id)

    def forget_conversations(self) -> None:
        """Every conversation issued so far is unknown from now on: a ``chat.update`` that
        names one is refused with error 4002 (as when Coze dropped it)."""
        self._conversations.forget()

    def expire_access_tokens(self) -> None:
        """Every issued OAuth access token stops working now (PATs are not affected)."""
        self._oauth.expire_access_tokens()

    async def wait_for(self, predicate: Callable[[], bool], within_s: float) -> None:
        """Poll the simulator's own record until ``predicate`` holds (for tests)."""
        async with asyncio.timeout(within_s):
            while not predicate():  # noqa: ASYNC110 - the record has no event to wait on
                await asyncio.sleep(0.01)


async def serve(host: str, port: int, *, reply_speed: float = 6.0) -> None:
    """``coze-edge simulator``: serve until cancelled."""
    sim = Simulator(host=host, port=port, reply_speed=reply_speed)
    async with sim:
        log.info("Coze simulator: REST %s, WebSocket %s/v1/chat", sim.api_base, sim.ws_base)
        log.info(
            "personal access tokens accepted: %s; approve logins at %s/device",
            sorted(sim.pats),
            sim.api_base,
        )
        await asyncio.Event().wait()
