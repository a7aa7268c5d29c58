"""Shared fixtures: a real Rasa server and action server (trained model, started once per
run), a fake Rasa (tests/fake_rasa.py, one per test), and real gateways on real ports
talking to them.

Every test that (transitively) uses `rasa_install` — the real engine — is marked `e2e`
here, so `pytest -m "not e2e"` (`./aftersales test-quick`) runs everything else and never
starts Rasa.

The quick suite runs in parallel (pytest-xdist, `./aftersales test-quick`): each worker has
Redis databases of its own (`redis_url`), its own flows database (FLOWS_DB_PATH) and tmp
dirs, and every server on a free port. Tests wait for what they expect, never for a fixed
time: `settled()` (the gateway finished everything it accepted) and
`ChatClient.unread_replies()` (what a socket got up to now) are how a test knows that
nothing more will come."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from aiohttp import web

from bot.config import Settings
from bot.conversation import ConversationService
from bot.sealing import DataKeys
from bot.serving import serve
from gateway.rasa_runtime import RasaProcesses, ensure_model, ensure_rasa_venv
from tests.fake_rasa import FakeRasa

# gateway.app (and with it aiogram, ~5 s of imports) is imported in `pytest_configure`, not
# here: under pytest-xdist the controller process loads this file too, and runs no test.

# The flows' data (demo orders, cases) for this test run: a fresh SQLite file. Set before
# any fixture starts the action server, which inherits the environment; tests read the
# cases the flows made from it. An xdist worker inherits the controller's environment: it
# makes a file of its own, unless FLOWS_DB_PATH was given from outside.
_OWN_FLOWS_DB = "AFTERSALES_TESTS_OWN_FLOWS_DB"
if "FLOWS_DB_PATH" not in os.environ or (os.environ.get("PYTEST_XDIST_WORKER")
                                         and os.environ.get(_OWN_FLOWS_DB) == os.environ["FLOWS_DB_PATH"]):
    os.environ["FLOWS_DB_PATH"] = os.environ[_OWN_FLOWS_DB] = str(
        Path(tempfile.mkdtemp(prefix="flows-test-")) / "flows.sqlite3")
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


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the pytest-xdist controller: it runs no test, its workers import what they need
    import gateway.app  # noqa: F401  (before any test: a test's event loop is never blocked by it)


REAL_RASA = "rasa_install"  # the fixture every use of the real engine goes through


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the real engine `e2e`: `-m "not e2e"` is then exactly
    everything but the real-engine suite."""
    for item in items:
        if REAL_RASA in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # In parallel the longest tests go first, one per worker, so that none of them is
        # left running alone at the end: those that start a gateway process (tests/gateway_process.py).
        items.sort(key=lambda item: not hasattr(getattr(item, "module", None), "start_gateway_process"))


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
        from gateway.app import SERVICE_KEY

        return self.app[SERVICE_KEY]


async def start_gateway(settings: Settings) -> tuple[RunningGateway, web.AppRunner]:
    from gateway.app import create_app

    app = create_app(settings)
    runner = await serve(app, settings.host, settings.port, shutdown_timeout=2)  # exactly as `gateway` starts it
    return RunningGateway(settings, app), runner


async def settled(service: ConversationService, *busy: Callable[[], object], timeout: float = 30.0) -> None:
    """Until the gateway has finished everything it accepted: no message is waiting for or in
    a turn (`service.total_pending`; a turn ends after its replies and its hooks' replies
    were handed to the channel) and none of `busy` (a channel's work in flight: updates not
    yet submitted, kept deliveries not yet answered) says it is busy. Seen calm twice in a
    row, a loop pass apart, so that what a finished turn starts in a callback is seen too.

    What tests wait for before asserting "nothing more was sent", instead of a fixed time."""
    calm = 0
    async with asyncio.timeout(timeout):
        while calm < 2:
            await asyncio.sleep(0.02)
            calm = calm + 1 if service.total_pending == 0 and not any(b() for b in busy) else 0


async def tasks_finished(since: set[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Until every task started after `since` (`asyncio.all_tasks()` taken earlier) has
    finished: e.g. a gateway whose start failed left nothing running that could still act."""
    try:
        async with asyncio.timeout(timeout):
            while left := [t for t in asyncio.all_tasks() - since if t is not asyncio.current_task() and not t.done()]:
                await asyncio.wait(left, timeout=0.1)
    except TimeoutError:
        raise AssertionError(f"still running: {[t.get_name() for t in left]}") from None


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

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """Keep reading the socket while the test waits on something else, as a browser does:
        the gateway's pings are answered (an unread client socket is closed after about 45 s),
        the frames that come meanwhile go to `frames`."""
        async def read() -> None:
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                self.frames.append(json.loads(msg.data))

        reader = asyncio.create_task(read())
        try:
            yield
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

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

    async def replies_of_the_turn(self, gateway: RunningGateway, first_timeout: float = 30.0) -> list[dict[str, Any]]:
        """All reply frames of one bot turn: waits for the first, then takes the rest the
        gateway sent by the time it finished the turn (`unread_replies`). The gateway is the
        one the turn runs on (the one this socket is connected to)."""
        first = await self.next_frame("reply", timeout=first_timeout)
        return [first, *await self.unread_replies(gateway)]

    async def unread_replies(self, gateway: RunningGateway, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The reply frames this socket got and the test has not read yet, once `gateway` has
        finished everything it accepted (`settled`): what a turn, an agent's action or a
        duplicate would still have sent is among them, so an empty list means "nothing more".

        The end of what was sent is marked with a frame published after it through the
        gateway's own fanout, the way every frame for this conversation goes (bot/fanout.py):
        frames of one conversation arrive in the order they were published, on one gateway
        and across gateways on Redis. The marker itself is not kept in `frames`."""
        from channels.webchat.websocket import FANOUT_TOPIC, WebchatOutput

        assert self.conversation_id is not None
        await settled(gateway.service, timeout=timeout)
        marker = {"type": "test-marker", "id": uuid.uuid4().hex}
        output = gateway.service.output_for("webchat")
        assert isinstance(output, WebchatOutput)
        await output.fanout.publish(FANOUT_TOPIC, {"conversation_id": self.conversation_id, "frame": marker})
        replies = []
        while True:
            frame = await self.next_frame("reply", marker["type"], timeout=timeout)
            if frame == marker:
                self.frames.remove(frame)
                return replies
            if frame["type"] == "reply":
                replies.append(frame)

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


# Redis databases each test process has: the shared test database (`redis_url`) and, below
# it, the two that tests/e2e keep for themselves (`own_redis` there: one below; test_crash.py:
# two below). An xdist worker gwN has the block N below the first: 15-13, 12-10, 9-7, ...
REDIS_DBS_PER_PROCESS = 3


def worker_number() -> int:
    """This pytest-xdist worker's number (gw0 -> 0); 0 when the tests run in one process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A real Redis server (`./aftersales test` starts one when none answers).

    Uses database `TEST_REDIS_DB` (default 15) on `TEST_REDIS_URL` (default
    redis://127.0.0.1:6379), emptied once at the start of the run; under pytest-xdist,
    worker gwN uses the database 3·N below it (`REDIS_DBS_PER_PROCESS`), so no two workers
    share one (nor the databases the e2e tests take below theirs).
    """
    import redis

    base = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    first = int(os.environ.get("TEST_REDIS_DB", "15"))
    db = first - REDIS_DBS_PER_PROCESS * worker_number()
    if "PYTEST_XDIST_WORKER" in os.environ and db - (REDIS_DBS_PER_PROCESS - 1) < 0:
        pytest.fail(f"Redis has 16 databases: TEST_REDIS_DB={first} leaves room for "
                    f"{(first + 1) // REDIS_DBS_PER_PROCESS} test processes; use fewer xdist workers", pytrace=False)
    url = f"{base}/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"no Redis at {url} ({exc}); `./aftersales test` starts one, or set TEST_REDIS_URL")
    client.flushdb()
    client.close()
    return url


@pytest.fixture
async def fake_slack() -> AsyncIterator[Any]:
    """The fake Slack Web API (tests/slack/fake_web_api.py), for Slack tests and for the
    handoff tests that check what agents see in their Slack channel."""
    from tests.slack.conftest import APP_TOKEN, BOT_TOKEN, BOT_USER
    from tests.slack.fake_web_api import FakeSlackApi

    fake = await FakeSlackApi(BOT_TOKEN, APP_TOKEN, bot_user_id=BOT_USER).start()
    try:
        yield fake
    finally:
        await fake.close()
