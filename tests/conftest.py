"""Shared fixtures: a real Rasa server and action server (trained model, started once per
run), a fake Rasa (tests/fake_rasa.py, one per test), and real gateways on real ports
talking to them.

Every test that (transitively) uses `rasa_install` — the real engine — is marked `e2e`
here, so `pytest -m "not e2e"` (`./aftersales test-quick`) runs everything else and never
starts Rasa."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from bot.config import Settings
from bot.conversation import ConversationService
from bot.sealing import DataKeys
from bot.serving import serve
from gateway.app import SERVICE_KEY, create_app
from gateway.rasa_runtime import RasaProcesses, ensure_model, ensure_rasa_venv
from tests.fake_rasa import FakeRasa

# The flows' data (demo orders, cases) for this test run: a fresh SQLite file. Set before
# any fixture starts the action server, which inherits the environment; tests read the
# cases the flows made from it.
os.environ.setdefault("FLOWS_DB_PATH", str(Path(tempfile.mkdtemp(prefix="flows-test-")) / "flows.sqlite3"))
# One data key for the run, shared by the action server (inherited) and the gateways
# (`make_settings`), so both seal and open the cases with the same key.
os.environ.setdefault("DATA_KEYS", DataKeys.generate().export())


# Figures printed at the end of the run (also without `-s`, e.g. in CI): the Rasa evaluation
# and the held-out conversation evaluation.
REPORT: list[str] = []


def report(line: str) -> None:
    REPORT.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.write_sep("=", "Evaluation")
        for line in REPORT:
            terminalreporter.write_line(line)


REAL_RASA = "rasa_install"  # the fixture every use of the real engine goes through


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the real engine `e2e`: `-m "not e2e"` is then exactly
    everything but the real-engine suite."""
    for item in items:
        if REAL_RASA in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


_RUNNING: dict[str, pytest.Item] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _RUNNING["item"] = item


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def rasa_install() -> tuple[Path, Path]:
    item = _RUNNING.get("item")
    if item is not None and item.get_closest_marker("e2e") is None:  # e.g. reached by getfixturevalue
        pytest.fail(f"{item.nodeid} starts the real Rasa but is not marked e2e: ask for `rasa_stack` "
                    "(or `rasa_install`) in its arguments", pytrace=False)
    venv = ensure_rasa_venv()
    return venv, ensure_model(venv)


@pytest.fixture(scope="session")
def rasa_stack(rasa_install: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RasaProcesses]:
    """The real Rasa server + action server, shared by the whole run."""
    venv, model = rasa_install
    with running(RasaProcesses(venv=venv, model=model, rasa_port=free_port(), actions_port=free_port(),
                               log_dir=tmp_path_factory.mktemp("rasa-logs"))) as procs:
        yield procs


@contextmanager
def running(procs: RasaProcesses, timeout: float = 240) -> Iterator[RasaProcesses]:
    """Both Rasa processes started and answering; stopped afterwards."""
    procs.start()
    try:
        procs.wait_ready(timeout=timeout)
        yield procs
    finally:
        procs.stop()


@pytest.fixture
async def fake_rasa() -> AsyncIterator[FakeRasa]:
    """A fake Rasa (tests/fake_rasa.py) on its own port, for this test only: a tiny dialogue
    with the flows' own texts, the tracker API, and fault injection."""
    rasa = await FakeRasa().start()
    try:
        yield rasa
    finally:
        await rasa.close()


@pytest.fixture
def rasa_url(request: pytest.FixtureRequest) -> str:
    """The Rasa a fixture's gateway talks to: the test's `fake_rasa`, or the real one when the
    test asks for `rasa_stack` itself (its assertions need the real flows, orders or NLU)."""
    if "rasa_stack" in request.fixturenames:
        stack: RasaProcesses = request.getfixturevalue("rasa_stack")
        return stack.rasa_url
    fake: FakeRasa = request.getfixturevalue("fake_rasa")
    return fake.url


def make_settings(tmp_path: Path, rasa_url: str, **overrides: Any) -> Settings:
    base = Settings(host="127.0.0.1", port=free_port(), rasa_url=rasa_url, data_dir=tmp_path / "data",
                    secret="test-secret-" + "x" * 32, data_keys=os.environ["DATA_KEYS"],
                    rasa_retry_initial_seconds=0.2,
                    rasa_retry_max_seconds=1.0, holding_after_seconds=0.5,
                    # The evaluation opens hundreds of conversations from 127.0.0.1; the shipped
                    # default is attacked in tests/e2e/test_attacks.py.
                    webchat_new_sessions_per_minute=100_000)
    return replace(base, **overrides)


@dataclass
class RunningGateway:
    settings: Settings
    app: web.Application

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.settings.port}/webchat/ws"

    @property
    def service(self) -> ConversationService:
        return self.app[SERVICE_KEY]


async def start_gateway(settings: Settings) -> tuple[RunningGateway, web.AppRunner]:
    app = create_app(settings)
    runner = await serve(app, settings.host, settings.port, shutdown_timeout=2)  # exactly as `gateway` starts it
    return RunningGateway(settings, app), runner


@pytest.fixture
async def gateway(rasa_stack: RasaProcesses, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway on its own port, in front of the shared real Rasa."""
    running, runner = await start_gateway(make_settings(tmp_path, rasa_stack.rasa_url))
    try:
        yield running
    finally:
        await runner.cleanup()


class ChatClient:
    """A web chat shopper: a real websocket speaking docs/webchat-protocol.md."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.token: str | None = None
        self.conversation_id: str | None = None
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, ws_url: str, token: str | None = None, locale: str = "en",
                      headers: dict[str, str] | None = None) -> "ChatClient":
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(ws_url, headers=headers)
        except Exception:
            await session.close()
            raise
        client = cls(session, ws)
        await ws.send_json({"type": "hello", "token": token, "locale": locale})
        frame = await client.next_frame("session")
        client.token, client.conversation_id = frame["token"], frame["conversation_id"]
        return client

    async def next_frame(self, *types: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next frame of one of `types`, skipping others (they stay in `frames`)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"socket ended: {msg.type} {msg.data!r}")
                frame = json.loads(msg.data)
                self.frames.append(frame)
                if not types or frame["type"] in types:
                    return frame

    async def say(self, text: str, payload: str | None = None, message_id: str | None = None) -> str:
        message_id = message_id or uuid.uuid4().hex
        frame: dict[str, Any] = {"type": "message", "id": message_id, "text": text}
        if payload:
            frame["payload"] = payload
        await self.ws.send_json(frame)
        return message_id

    async def replies_until_quiet(self, first_timeout: float = 30.0, quiet: float = 0.8) -> list[dict[str, Any]]:
        """All reply frames of one bot turn: waits for the first, then until none comes for `quiet` s."""
        replies = [await self.next_frame("reply", timeout=first_timeout)]
        while True:
            try:
                replies.append(await self.next_frame("reply", timeout=quiet))
            except TimeoutError:
                return replies

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


@pytest.fixture
async def chat(gateway: RunningGateway) -> AsyncIterator[ChatClient]:
    client = await ChatClient.connect(gateway.ws_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A real Redis server (`./aftersales test` starts one when none answers).

    Uses database `TEST_REDIS_DB` (default 15) on `TEST_REDIS_URL` (default
    redis://127.0.0.1:6379), emptied once at the start of the run.
    """
    import redis

    base = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    url = f"{base}/{os.environ.get('TEST_REDIS_DB', '15')}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"no Redis at {url} ({exc}); `./aftersales test` starts one, or set TEST_REDIS_URL")
    client.flushdb()
    client.close()
    return url
