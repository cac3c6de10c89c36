"""
A real mosquitto for tests, on a free loopback port, and the stock command-line clients
(mosquitto_sub, mosquitto_pub) as the user's view of it.

* :func:`running_broker` starts one (plain, or TLS with a client certificate and a password
  file, or several users under an ACL file) and stops it; :meth:`Broker.restart` brings it
  back on the same port (with ``persistence false``, so retained messages are gone);
  :meth:`Broker.pause` freezes it (SIGSTOP), which is what a slow broker looks like from the
  device.
* :func:`make_tls_files` makes a throwaway CA, server and client certificate with ``openssl``.
* :class:`Watcher` is a ``mosquitto_sub`` whose every message is kept for assertions.
* :func:`mqtt_publish` publishes as a user would; :func:`publish_refusal` publishes with
  MQTT 5, whose acknowledgement says whether the broker's ACL let it through.

The stock clients log in as the broker's ``user`` unless told ``as_user``, one of ``users``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port
from tests.support.timing import MS

PROBE_TOPIC = "coze-test-probe"

PROBE_ACL = f"pattern readwrite {PROBE_TOPIC}/#"
"""Added to an ACL under test: every user may use the probe topic that tells a
:class:`Watcher` its subscription is in place. It grants nothing else."""


# --- TLS material ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 / localhost and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=coze-edge test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    leaf = {
        "server": "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, extensions in leaf.items():
        (directory / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "authorityKeyIdentifier=keyid\n" + extensions
        )
        _openssl(
            "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=coze-edge test {name}",
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=directory,
        )  # fmt: skip
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return TlsFiles(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


# --- the broker --------------------------------------------------------------------------------


class Broker:
    """
    One mosquitto; ``start``/``stop``/``restart`` keep the same port. Anonymous clients may
    do anything, unless there is a ``user`` (the stock clients' login) or ``users`` (more
    logins, name -> password): then only they may log in. With an ``acl`` file (mosquitto's
    ``acl_file`` format, plus :data:`PROBE_ACL`) each may do what it grants.
    """

    def __init__(
        self,
        directory: Path,
        *,
        tls: TlsFiles | None = None,
        user: tuple[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        acl: Path | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.tls = tls
        self.user = user
        self.users = dict(users or {})
        """Every login, name -> password."""
        if user is not None:
            self.users[user[0]] = user[1]
        self.acl = acl
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "set_tcp_nodelay true",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to `mosquitto`, which can't read keys
        if not self.users:
            lines.append("allow_anonymous true")
        else:
            passwd = self.directory / "passwd"
            passwd.unlink(missing_ok=True)
            passwd.touch(0o600)
            for name, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), name, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        if self.acl is not None:
            acl = self.directory / "acl"
            acl.write_text(f"{self.acl.read_text()}\n{PROBE_ACL}\n")
            lines.append(f"acl_file {acl}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
            ]
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    async def start(self) -> None:
        config = self._write_config()
        with (self.directory / "mosquitto.log").open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                "mosquitto", "-c", str(config), stdout=log, stderr=log
            )
        for _ in range(400):
            if self._process.returncode is not None:
                raise RuntimeError(f"mosquitto exited: {self.log()}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            await asyncio.sleep(5 * MS)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log()}")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)  # in case it was paused
            process.terminate()
        await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client_args(self, as_user: str | None = None) -> list[str]:
        """What mosquitto_sub / mosquitto_pub need to reach this broker (as ``user``, or
        ``as_user``)."""
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-q", "1"]
        name = as_user if as_user is not None else self.user[0] if self.user else None
        if name is not None:
            args += ["-u", name, "-P", self.users[name]]
        if self.tls is not None:
            tls = self.tls
            args += ["--cafile", str(tls.ca), "--cert", str(tls.client_cert)]
            args += ["--key", str(tls.client_key)]
        return args


@contextlib.asynccontextmanager
async def running_broker(
    directory: Path,
    *,
    tls: TlsFiles | None = None,
    user: tuple[str, str] | None = None,
    users: Mapping[str, str] | None = None,
    acl: Path | None = None,
) -> AsyncIterator[Broker]:
    broker = Broker(directory, tls=tls, user=user, users=users, acl=acl)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def mqtt_publish(
    broker: Broker,
    topic: str,
    payload: bytes,
    *,
    retain: bool = False,
    as_user: str | None = None,
) -> None:
    """Publish as a user would, with mosquitto_pub (MQTT 3.1.1: a message the ACL refuses
    is dropped without a word; :func:`publish_refusal` hears it)."""
    err = await _mosquitto_pub(broker, topic, payload, retain=retain, as_user=as_user)
    assert not err, err


_REFUSED = re.compile(r"Warning: Publish \d+ failed: (.+?)\.?$", re.MULTILINE)


async def publish_refusal(
    broker: Broker, topic: str, payload: bytes, *, as_user: str
) -> str | None:
    """Publish as ``as_user`` with MQTT 5, whose PUBACK carries a reason code: why the broker
    refused the message (``Not authorized``), or None if it took it."""
    err = await _mosquitto_pub(broker, topic, payload, as_user=as_user, mqtt5=True)
    refused = _REFUSED.search(err)
    assert refused or not err, err
    return refused[1] if refused else None


async def _mosquitto_pub(
    broker: Broker,
    topic: str,
    payload: bytes,
    *,
    retain: bool = False,
    as_user: str | None = None,
    mqtt5: bool = False,
) -> str:
    """mosquitto_pub once; what it printed on stderr (AssertionError if it failed to run)."""
    args = [*broker.client_args(as_user), "-t", topic]
    args += ["-r"] if retain else []
    args += ["-V", "mqttv5"] if mqtt5 else []
    args += ["-s"] if payload else ["-n"]
    process = await asyncio.create_subprocess_exec(
        "mosquitto_pub", *args, stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = await process.communicate(payload)
    assert process.returncode == 0, err.decode(errors="replace")
    return err.decode(errors="replace").strip()


# --- watching ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One message as mosquitto_sub printed it."""

    topic: str
    payload: bytes
    retained: bool


def state_is(topic: str, state: str, **fields: object) -> Callable[[Seen], bool]:
    """A retained ``state`` document on ``topic`` with this state and these fields."""

    def match(seen: Seen) -> bool:
        if seen.topic != topic or not seen.payload:
            return False
        data = json.loads(seen.payload)
        return bool(data["state"] == state and all(data[k] == v for k, v in fields.items()))

    return match


def event_is(topic: str, kind: str, **fields: object) -> Callable[[Seen], bool]:
    """An ``event`` message on ``topic`` of this type, with these fields."""

    def match(seen: Seen) -> bool:
        if seen.topic != topic:
            return False
        data = json.loads(seen.payload)
        return bool(data["type"] == kind and all(data.get(k) == v for k, v in fields.items()))

    return match


class Watcher:
    """A ``mosquitto_sub`` on ``topics`` (as ``as_user``, if given); everything it prints is
    kept in ``seen``."""

    _probes = itertools.count()

    def __init__(self, broker: Broker, topics: list[str], *, as_user: str | None = None) -> None:
        self._broker = broker
        self._topics = topics
        self._as_user = as_user
        self.seen: list[Seen] = []
        self._arrived = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start, and return once the subscription is in place (a probe message came back)."""
        args = [*self._broker.client_args(self._as_user), "-F", "%r %t %x"]
        for topic in [*self._topics, f"{PROBE_TOPIC}/#"]:
            args += ["-t", topic]
        self._process = await asyncio.create_subprocess_exec(
            "mosquitto_sub", *args, stdout=subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read())
        probe = f"{PROBE_TOPIC}/{next(self._probes)}"
        async with asyncio.timeout(5000 * MS):
            while not any(seen.topic == probe for seen in self.seen):
                await mqtt_publish(self._broker, probe, b"", as_user=self._as_user)
                await self.wait_for(lambda seen: seen.topic == probe, within=100 * MS, quiet=True)

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
        if self._process is not None:
            await self._process.wait()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        async for line in self._process.stdout:
            retained, topic, hex_payload = line.decode().rstrip("\n").split(" ", 2)
            self.seen.append(Seen(topic, bytes.fromhex(hex_payload), retained == "1"))
            self._arrived.set()

    def mark(self) -> int:
        """A point in ``seen``: later ``wait_for(since=mark)`` calls look only after it."""
        return len(self.seen)

    def on(self, topic: str, since: int = 0) -> list[Seen]:
        """What arrived on ``topic`` (after ``since``)."""
        return [seen for seen in self.seen[since:] if seen.topic == topic]

    async def wait_for(
        self,
        match: Callable[[Seen], bool],
        *,
        since: int = 0,
        within: float = 3000 * MS,
        quiet: bool = False,
    ) -> Seen | None:
        """The first message (after ``since``) that matches; AssertionError after ``within`` s."""
        try:
            async with asyncio.timeout(within):
                while True:
                    for seen in self.seen[since:]:
                        if match(seen):
                            return seen
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            if quiet:
                return None
            raise AssertionError(f"nothing matched within {within:.1f} s: {self.seen}") from None

    async def wait_topic(
        self,
        topic: str,
        payload: bytes | Callable[[bytes], bool] | None = None,
        *,
        since: int = 0,
        within: float = 3000 * MS,
    ) -> Seen:
        """The first message on ``topic`` (with ``payload``, or one it accepts) after ``since``."""

        def match(seen: Seen) -> bool:
            if seen.topic != topic:
                return False
            if payload is None:
                return True
            if isinstance(payload, bytes):
                return seen.payload == payload
            return payload(seen.payload)

        found = await self.wait_for(match, since=since, within=within)
        assert found is not None
        return found


@contextlib.asynccontextmanager
async def watching(
    broker: Broker, topics: list[str], *, as_user: str | None = None
) -> AsyncIterator[Watcher]:
    watcher = Watcher(broker, topics, as_user=as_user)
    try:
        await watcher.start()
        yield watcher
    finally:
        await watcher.stop()
