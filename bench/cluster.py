"""Scale-out, gateway overhead and memory per socket, each against a baseline measured in the
same run (the style of bench/latency.py, whose helpers it reuses).

1. Scale-out with the real engine: turns/s and p50/p99 of one gateway + one Rasa server
   against two gateways + two Rasa servers behind HAProxy (`python -m gateway cluster`),
   under the same offered load (concurrent web chat shoppers, short texts the model
   answers). Target: 2+2 gives >= 1.6x the throughput of 1+1.
2. Gateway overhead with an instant fake Rasa (`--serve fake-rasa`, one process, the same
   for all): round trips/s and p50/p99 of (a) the real gateway (`python -m gateway gateway`),
   without Redis and with REDIS_URL, (b) a minimal proxy (`--serve proxy`: websocket in,
   one HTTP POST to the fake, websocket out), (c) a bare websocket echo (`--serve echo`).
   Every server in its own process, the same client load, in alternating rounds.
   Target: gateway >= 0.8x the proxy's round trips/s.
3. Memory per idle web chat socket with Redis on: one gateway, 10,000 sockets that said
   hello and got their session (opened by a client process, `--serve idle-clients`);
   the gateway's VmRSS before and after. Target: 10,000 sockets < 300 MB RSS.

    ./aftersales bench --cluster [--parts scale,overhead,memory] [--help for the sizes]

Prints the figures, the ratios and "target met"/"target missed" per target (no asserts)
and writes them to bench/results/cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import aiohttp
import orjson
from aiohttp import WSMsgType, web

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from latency import MESSAGES, Sample, free_port, wait_http  # noqa: E402

PYTHON = sys.executable
WORK = ROOT / "var" / "bench-cluster"
RESULTS = BENCH / "results" / "cluster.json"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/14"
FAKE_REPLY = "Hi! I can help with returns, refunds and orders."
SCALE_TARGET, OVERHEAD_TARGET, MEMORY_TARGET_MB = 1.6, 0.80, 300.0
# Limits raised for the benchmark: it is one client sending as fast as it is answered.
UNLIMITED = {"WEBCHAT_RATE_BURST": "1000000", "WEBCHAT_RATE_PER_SECOND": "1000000",
             "WEBCHAT_NEW_SESSIONS_PER_MINUTE": "1000000", "MAX_CONNECTIONS_PER_ADDRESS": "100000"}


def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool) -> str:
    return "target met" if ok else "target missed"


def raise_nofile() -> int:
    """RLIMIT_NOFILE's soft limit raised to the hard one (a socket is a file); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def figures(sample: Sample) -> dict[str, float]:
    return {"p50_ms": sample.percentile(50), "p99_ms": sample.percentile(99), "throughput": sample.throughput,
            "turns": len(sample.latencies)}


# -- servers the bench starts in their own processes (`--serve ROLE`) -----------------------------------


def serve_fake_rasa(port: int) -> None:
    """Rasa's REST webhook answering at once with one text; what else the gateway asks (status,
    version, tracker) answered as an idle Rasa would."""
    async def webhook(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response([{"recipient_id": body.get("sender"), "text": FAKE_REPLY}])

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"model_file": "bench-fake.tar.gz", "model_id": "bench", "num_active_training_jobs": 0})

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "3.6.21", "minimum_compatible_version": "3.6.21"})

    async def tracker(request: web.Request) -> web.Response:
        return web.json_response({"sender_id": request.match_info["id"], "slots": {}, "events": [], "paused": False,
                                  "latest_message": {}, "active_loop": {}})

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)
    app.router.add_get("/status", status)
    app.router.add_get("/version", version)
    app.router.add_get("/", version)
    app.router.add_get("/conversations/{id}/tracker", tracker)
    app.router.add_post("/conversations/{id}/tracker/events", tracker)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


HTTP_KEY = web.AppKey("http", aiohttp.ClientSession)


def serve_proxy(port: int, rasa_url: str) -> None:
    """The least a web chat gateway can do: a websocket in, one HTTP POST to Rasa's webhook per
    message, the replies out as frames."""
    webhook = f"{rasa_url}/webhooks/rest/webhook"

    async def chat(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024)
        await ws.prepare(request)
        http = request.app[HTTP_KEY]
        conversation: str | None = None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame.get("type") == "hello":
                conversation = uuid.uuid4().hex
                await ws.send_json({"type": "session", "conversation_id": conversation, "token": None,
                                    "resumed": False})
            elif frame.get("type") == "message" and conversation is not None:
                body = {"sender": conversation, "message": frame.get("text"), "metadata": {"message_id": frame.get("id")}}
                async with http.post(webhook, json=body) as resp:
                    replies = await resp.json()
                for reply in replies:
                    await ws.send_json({"type": "reply", "text": reply.get("text"), "buttons": reply.get("buttons") or [],
                                        "image": reply.get("image"), "custom": reply.get("custom"), "holding": False})
        return ws

    async def client(app: web.Application) -> Any:
        app[HTTP_KEY] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, limit_per_host=200))
        yield
        await app[HTTP_KEY].close()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/webchat/ws", chat)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_echo(port: int) -> None:
    """A bare aiohttp websocket echo: every text frame back as it came."""
    async def chat(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/webchat/ws", chat)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_idle_clients(url: str, count: int, sources: Sequence[str], concurrency: int, deflate: bool) -> None:
    """Open `count` web chat sockets (hello, session frame), spread over `sources` (local
    addresses), print `OPEN <n>`, then hold them idle until stdin closes. `deflate`: ask for
    permessage-deflate, as browsers do."""
    raise_nofile()

    async def run() -> None:
        connectors = [aiohttp.TCPConnector(limit=0, local_addr=(source, 0)) for source in sources]
        sessions = [aiohttp.ClientSession(connector=c) for c in connectors]
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []

        async def one(index: int) -> None:
            async with gate:
                try:
                    ws = await sessions[index % len(sessions)].ws_connect(url, autoping=True, compress=15 if deflate else 0)
                    await say_hello(ws)
                    sockets.append(ws)
                except Exception as exc:  # counted and reported; the run goes on
                    failures.append(repr(exc))

        await asyncio.gather(*(one(i) for i in range(count)))
        print(f"OPEN {len(sockets)} FAILED {len(failures)} {failures[:3]!r}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        for session in sessions:
            await session.close()

    asyncio.run(run())


# -- processes ----------------------------------------------------------------------------------------


def log_file(name: str) -> Any:
    WORK.mkdir(parents=True, exist_ok=True)
    return (WORK / f"{name}.log").open("wb")


def start_role(role: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    with log_file(role) as out:
        return subprocess.Popen([PYTHON, str(Path(__file__)), "--serve", role, "--port", str(port), *extra], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def start_gateway(name: str, port: int, rasa_url: str, redis_url: str = "", **env: str) -> subprocess.Popen[bytes]:
    """`python -m gateway gateway` as in production (INFO logs, to a file), limits raised."""
    data_dir = WORK / name
    data_dir.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RASA_URL", "GATEWAY_PORT")}
    environ.update(UNLIMITED, GATEWAY_PORT=str(port), RASA_URL=rasa_url, DATA_DIR=str(data_dir),
                   LOG_LEVEL=env.pop("LOG_LEVEL", "INFO"), **env)
    if redis_url:
        environ["REDIS_URL"] = redis_url
    with log_file(name) as out:
        return subprocess.Popen([PYTHON, "-m", "gateway", "gateway"], cwd=ROOT, env=environ, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=raise_nofile)


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, wait: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


# -- the client ---------------------------------------------------------------------------------------


@dataclass
class Load:
    shoppers: int
    turns: int


async def _answer(ws: aiohttp.ClientWebSocketResponse, message_id: str, after_typing: bool) -> None:
    """Until this message's first reply. The gateway sends `typing` on before each turn's Rasa
    call and after every reply of the turn before: a `reply` seen after it is this turn's
    (a reply left over from the previous turn is not mistaken for it). The echo answers
    with the message itself."""
    typing_seen = not after_typing
    while True:
        msg = await ws.receive(timeout=60)
        if msg.type != WSMsgType.TEXT:
            raise RuntimeError(f"socket closed while waiting for a reply: {msg.type} {msg.data!r}")
        frame = orjson.loads(msg.data)  # the load client's own cost kept low: it shares the cores
        kind = frame.get("type")
        if kind == "typing" and frame.get("on"):
            typing_seen = True
        elif kind == "reply" and typing_seen:
            return
        elif kind == "message" and frame.get("id") == message_id:
            return
        elif kind == "error":
            raise RuntimeError(f"refused: {frame}")


async def say_hello(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The web chat's opening: hello, then wait for the session (the echo sends the hello back)."""
    await ws.send_json({"type": "hello", "token": None, "locale": "en"})
    while True:
        frame = await ws.receive_json(timeout=60)
        if frame.get("type") in ("session", "hello"):
            return
        if frame.get("type") == "error":
            raise RuntimeError(f"hello refused: {frame.get('code')}")


async def shopper(session: aiohttp.ClientSession, url: str, turns: int, out: list[float], connected: Callable[[], None],
                  go: asyncio.Event, after_typing: bool) -> None:
    async with session.ws_connect(url) as ws:
        await say_hello(ws)
        connected()
        await go.wait()
        for i in range(turns):
            message_id = uuid.uuid4().hex
            started = time.perf_counter()
            await ws.send_str(orjson.dumps({"type": "message", "id": message_id, "text": MESSAGES[i % len(MESSAGES)]}).decode())
            await _answer(ws, message_id, after_typing)
            out.append(time.perf_counter() - started)


@dataclass
class Round(Sample):
    dropped: int = 0  # shoppers whose socket closed or failed mid-round (their answered turns count)
    reason: str = ""


async def run_round(url: str, load: Load, after_typing: bool) -> Round:
    """`load.shoppers` sockets connect and say hello; then all send their turns at once, each
    the next as soon as the last is answered. Timed from the start signal to the last answer.
    A shopper whose socket drops mid-round stops there and is counted as dropped."""
    latencies: list[float] = []
    ready = 0
    all_ready, go = asyncio.Event(), asyncio.Event()

    def connected() -> None:
        nonlocal ready
        ready += 1
        if ready == load.shoppers:
            all_ready.set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(shopper(session, url, load.turns, latencies, connected, go, after_typing))
                 for _ in range(load.shoppers)]
        waiting = asyncio.create_task(all_ready.wait())
        await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if not all_ready.is_set():  # a shopper failed before the start
            waiting.cancel()
            await asyncio.gather(*tasks)
        started = time.perf_counter()
        go.set()
        ended = await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.perf_counter() - started
    failed = [e for e in ended if isinstance(e, BaseException)]
    return Round(latencies, elapsed, dropped=len(failed), reason=repr(failed[0])[:160] if failed else "")


async def alternate(targets: dict[str, tuple[str, bool]], load: Load, rounds: int, warmup: Load,
                    pids: dict[str, int] | None = None, cpu: dict[str, float] | None = None,
                    dropped: dict[str, int] | None = None) -> dict[str, Sample]:
    """Every target once per round, the order rotated each round so that drift hits all alike.
    With `pids` (target -> its server's process), `cpu` gets each server's CPU seconds spent
    during its own rounds."""
    for url, after_typing in targets.values():
        await run_round(url, warmup, after_typing)
    totals = {name: Sample() for name in targets}
    names = list(targets)
    drops = {name: 0 for name in targets}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            url, after_typing = targets[name]
            pid = (pids or {}).get(name)
            used = cpu_seconds(pid) if pid else 0.0
            sample = await run_round(url, load, after_typing)
            if pid and cpu is not None:
                cpu[name] = cpu.get(name, 0.0) + cpu_seconds(pid) - used
            totals[name].add(sample)
            drops[name] += sample.dropped
            say(f"  round {number + 1} {name:22} p50 {sample.percentile(50):7.2f} ms  p99 {sample.percentile(99):7.2f} ms"
                f"  {sample.throughput:8.1f} /s" + (f"  ({sample.dropped} sockets dropped: {sample.reason})"
                                                    if sample.dropped else ""))
    if dropped is not None:
        dropped.update(drops)
    return totals


def table(rows: dict[str, Sample], unit: str) -> None:
    say(f"{'':26}{'p50 ms':>10}{'p99 ms':>10}{unit:>12}")
    for name, sample in rows.items():
        say(f"{name:26}{sample.percentile(50):10.2f}{sample.percentile(99):10.2f}{sample.throughput:12.1f}")


# -- 2. gateway overhead -------------------------------------------------------------------------------


async def _wait_all(urls: Sequence[str]) -> None:
    await asyncio.gather(*(wait_http(url, timeout=60) for url in urls))


def part_overhead(args: argparse.Namespace) -> dict[str, Any]:
    say("== 2. Gateway overhead against an instant fake Rasa ==")
    ports = {name: free_port() for name in ("fake", "gateway", "gateway_redis", "proxy", "echo")}
    rasa_url = f"http://127.0.0.1:{ports['fake']}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_role("fake-rasa", ports["fake"]))
        procs.append(start_role("proxy", ports["proxy"], "--rasa", rasa_url))
        procs.append(start_role("echo", ports["echo"]))
        flush_redis(BENCH_REDIS_URL)
        procs.append(start_gateway("gateway", ports["gateway"], rasa_url, LOG_LEVEL=args.log_level))
        procs.append(start_gateway("gateway-redis", ports["gateway_redis"], rasa_url, BENCH_REDIS_URL,
                                   LOG_LEVEL=args.log_level))
        asyncio.run(_wait_all([f"{rasa_url}/status", *(f"http://127.0.0.1:{ports[n]}/healthz"
                                                        for n in ("gateway", "gateway_redis", "proxy", "echo"))]))
        targets = {
            "gateway (no Redis)": (f"ws://127.0.0.1:{ports['gateway']}/webchat/ws", True),
            "gateway (REDIS_URL)": (f"ws://127.0.0.1:{ports['gateway_redis']}/webchat/ws", True),
            "minimal proxy": (f"ws://127.0.0.1:{ports['proxy']}/webchat/ws", False),
            "bare echo": (f"ws://127.0.0.1:{ports['echo']}/webchat/ws", False),
        }
        say(f"{args.overhead_shoppers} sockets x {args.overhead_turns} round trips per round, {args.overhead_rounds} rounds"
            f" (gateway LOG_LEVEL={args.log_level})")
        load = Load(args.overhead_shoppers, args.overhead_turns)
        started = dict(zip(("fake", "proxy", "echo", "gateway", "gateway_redis"), procs, strict=True))
        pids = dict(zip(targets, (started[n].pid for n in ("gateway", "gateway_redis", "proxy", "echo")), strict=True))
        cpu: dict[str, float] = {}
        totals = asyncio.run(alternate(targets, load, args.overhead_rounds, Load(args.overhead_shoppers, 20), pids, cpu))
    finally:
        for proc in reversed(procs):
            stop_process(proc)
    say()
    table(totals, "trips/s")
    # CPU per round trip depends less on what else runs on the machine than round trips per second.
    per_trip = {name: cpu[name] / len(totals[name].latencies) * 1e6 for name in targets}
    say("server CPU per round trip: " + ", ".join(f"{name} {us:.0f} µs" for name, us in per_trip.items()))
    say(f"proxy CPU / gateway CPU per round trip: {per_trip['minimal proxy'] / per_trip['gateway (no Redis)']:.1%} "
        f"(no Redis), {per_trip['minimal proxy'] / per_trip['gateway (REDIS_URL)']:.1%} (REDIS_URL)")
    gateway, redis_gw = totals["gateway (no Redis)"], totals["gateway (REDIS_URL)"]
    proxy, echo = totals["minimal proxy"], totals["bare echo"]
    ratio, ratio_redis = gateway.throughput / proxy.throughput, redis_gw.throughput / proxy.throughput
    say(f"gateway (no Redis) / proxy: {ratio:6.1%}  ({verdict(ratio >= OVERHEAD_TARGET)}: >= {OVERHEAD_TARGET:.0%})")
    say(f"gateway (REDIS_URL) / proxy: {ratio_redis:6.1%}  ({verdict(ratio_redis >= OVERHEAD_TARGET)}: "
        f">= {OVERHEAD_TARGET:.0%})")
    say(f"proxy / echo: {proxy.throughput / echo.throughput:6.1%}")
    say(f"p50 added by the gateway over the proxy: {gateway.percentile(50) - proxy.percentile(50):.2f} ms (no Redis), "
        f"{redis_gw.percentile(50) - proxy.percentile(50):.2f} ms (REDIS_URL)")
    say()
    return {"load": {"sockets": load.shoppers, "round_trips_per_socket": load.turns, "rounds": args.overhead_rounds,
                     "gateway_log_level": args.log_level},
            **{key: figures(totals[name]) for key, name in (("gateway", "gateway (no Redis)"),
                                                            ("gateway_redis", "gateway (REDIS_URL)"),
                                                            ("proxy", "minimal proxy"), ("echo", "bare echo"))},
            "gateway_over_proxy": ratio, "gateway_redis_over_proxy": ratio_redis,
            "server_cpu_us_per_round_trip": per_trip,
            "proxy_over_echo": proxy.throughput / echo.throughput,
            "target": f"gateway/proxy >= {OVERHEAD_TARGET}", "target_met": ratio >= OVERHEAD_TARGET,
            "target_met_redis": ratio_redis >= OVERHEAD_TARGET}


# -- 3. memory per idle socket ------------------------------------------------------------------------


async def _open_close(url: str, count: int) -> None:
    """Warm-up: a few sockets through the whole handshake, then closed."""
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.ws_connect(url) as ws:
                await ws.send_json({"type": "hello", "token": None, "locale": "en"})
                while (await ws.receive_json(timeout=30)).get("type") != "session":
                    pass


def _settled_rss(pid: int, seconds: float = 3.0) -> int:
    """VmRSS once it stopped moving (at most `seconds`)."""
    last, deadline = rss_kb(pid), time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_kb(pid)
        if abs(now - last) < 256:
            return now
        last = now
    return last


def part_memory(args: argparse.Namespace) -> dict[str, Any]:
    say("== 3. Memory per idle web chat socket (REDIS_URL) ==")
    port, fake_port = free_port(), free_port()
    rasa_url = f"http://127.0.0.1:{fake_port}"
    url = f"ws://127.0.0.1:{port}/webchat/ws"
    sources = [f"127.0.0.{i}" for i in range(1, args.sources + 1)]
    fake = gateway = clients = None
    try:
        fake = start_role("fake-rasa", fake_port)
        flush_redis(BENCH_REDIS_URL)
        gateway = start_gateway("gateway-memory", port, rasa_url, BENCH_REDIS_URL, LOG_LEVEL=args.log_level,
                                HEADER_TIMEOUT_SECONDS="60")
        asyncio.run(_wait_all([f"{rasa_url}/status", f"http://127.0.0.1:{port}/healthz"]))
        asyncio.run(_open_close(url, 50))
        before = _settled_rss(gateway.pid)
        started = time.monotonic()
        with log_file("idle-clients") as err:
            clients = subprocess.Popen(
                [PYTHON, str(Path(__file__)), "--serve", "idle-clients", "--url", url, "--count", str(args.sockets),
                 "--source-list", ",".join(sources), "--deflate" if args.deflate else "--no-deflate"],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        assert clients.stdout is not None and clients.stdin is not None
        line = clients.stdout.readline().decode().strip()
        opened = int(line.split()[1]) if line.startswith("OPEN") else 0
        took = time.monotonic() - started
        after = _settled_rss(gateway.pid)
        gateway_alive = gateway.poll() is None
        clients.stdin.close()
        clients.wait(120)
    finally:
        stop_process(clients)
        stop_process(gateway)
        stop_process(fake)
    total_mb, delta_kb = after / 1024, after - before
    per_socket = delta_kb / opened if opened else float("nan")
    say(f"sockets opened: {opened} of {args.sockets} in {took:.1f} s from {len(sources)} source addresses ({line})")
    say(f"gateway VmRSS before: {before / 1024:.1f} MB, with the sockets: {total_mb:.1f} MB"
        f" (+{delta_kb / 1024:.1f} MB), {per_socket:.1f} KB per socket{'' if gateway_alive else ' (gateway died!)'}")
    scaled = (before + per_socket * 10_000) / 1024
    ok = opened >= args.sockets and total_mb < MEMORY_TARGET_MB
    say(f"{verdict(ok)}: {args.sockets} sockets < {MEMORY_TARGET_MB:.0f} MB RSS (at 10,000 sockets: {scaled:.1f} MB)")
    say()
    return {"sockets_requested": args.sockets, "sockets_open": opened, "source_addresses": len(sources),
            "rss_before_mb": before / 1024, "rss_after_mb": total_mb, "rss_added_mb": delta_kb / 1024,
            "kb_per_socket": per_socket, "rss_at_10000_mb": scaled, "target": f"10,000 sockets < {MEMORY_TARGET_MB} MB RSS",
            "target_met": ok}


# -- 1. scale-out with the real engine ----------------------------------------------------------------


class Cluster:
    """`python -m gateway cluster --gateways N --rasa N --port P --dir DIR`, ready once it prints
    `Cluster ready`; stopped with SIGINT."""

    def __init__(self, size: int, port: int) -> None:
        self.size, self.port = size, port
        self.dir = WORK / f"cluster-{size}x{size}"
        self.haproxy_log = self.dir / "logs" / "haproxy.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.ready_line = ""
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/webchat/ws"

    def haproxy_mark(self) -> int:
        return self.haproxy_log.stat().st_size if self.haproxy_log.is_file() else 0

    def haproxy_downs(self, mark: int) -> list[str]:
        """HAProxy's lines since `mark` saying it took a gateway out of the gateways backend
        (it then closes that gateway's sockets: `on-marked-down shutdown-sessions`)."""
        if not self.haproxy_log.is_file():
            return []
        with self.haproxy_log.open("rb") as log:
            log.seek(mark)
            text = log.read().decode(errors="replace")
        return [line.split(": ", 1)[-1].strip()[:200] for line in text.splitlines()
                if "gateways/" in line and "is DOWN" in line]

    async def start(self, timeout: float) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RASA_URL", "GATEWAY_PORT")}
        env.update(UNLIMITED, LOG_LEVEL="INFO")
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "gateway", "cluster", "--gateways", str(self.size), "--rasa", str(self.size),
            "--port", str(self.port), "--dir", str(self.dir), cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(ready))
        try:
            await asyncio.wait_for(ready, timeout)
        except BaseException:
            await self.stop()
            raise

    async def _read(self, ready: asyncio.Future[None]) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        path = WORK / f"cluster-{self.size}x{self.size}.log"
        with path.open("ab") as log:  # noqa: ASYNC230 - a local log file, line by line
            async for raw in self.proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip()
                self.lines.append(line)
                if line.startswith("Cluster ready") and not ready.done():
                    self.ready_line = line
                    ready.set_result(None)
        if not ready.done():
            ready.set_exception(RuntimeError(f"the {self.size}+{self.size} cluster ended before it was ready "
                                             f"(exit {await self.proc.wait()}); see {path}"))

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 90)
            except TimeoutError:
                say(f"  the {self.size}+{self.size} cluster did not stop within 90 s after SIGINT; killing its group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def cluster_available() -> tuple[bool, str]:
    done = subprocess.run([PYTHON, "-m", "gateway", "cluster", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


async def _scale(args: argparse.Namespace, dropped: dict[str, int], downs: dict[str, list[str]]) -> dict[str, Sample]:
    """`dropped`: sockets that closed mid-round per topology; `downs`: what HAProxy said when it
    took a gateway out (a failed /readyz check) while the topology was measured."""
    load = Load(args.scale_shoppers, args.scale_turns)
    warmup = Load(4, 4)
    sizes = (1, 2)
    totals = {f"{n} gateway + {n} Rasa": Sample() for n in sizes}
    if args.scale_together:  # both topologies up at once, rounds alternating between them
        clusters = [Cluster(n, free_port()) for n in sizes]
        try:
            for cluster in clusters:
                say(f"  starting the {cluster.size}+{cluster.size} cluster ...")
                started = time.monotonic()
                await cluster.start(args.cluster_timeout)
                say(f"  {cluster.ready_line} ({time.monotonic() - started:.0f} s)")
            targets = {f"{c.size} gateway + {c.size} Rasa": (c.url, True) for c in clusters}
            marks = [c.haproxy_mark() for c in clusters]
            try:
                return await alternate(targets, load, args.scale_rounds, warmup, dropped=dropped)
            finally:
                for c, mark in zip(clusters, marks, strict=True):
                    downs[f"{c.size} gateway + {c.size} Rasa"] = c.haproxy_downs(mark)
        finally:
            for cluster in clusters:
                await cluster.stop()
    # One topology at a time (they cannot run side by side), in blocks alternating A B A B ...
    for block in range(args.scale_blocks):
        for n in sizes if block % 2 == 0 else tuple(reversed(sizes)):
            cluster = Cluster(n, free_port())
            say(f"  starting the {n}+{n} cluster ...")
            started = time.monotonic()
            await cluster.start(args.cluster_timeout)
            say(f"  {cluster.ready_line} ({time.monotonic() - started:.0f} s)")
            name = f"{n} gateway + {n} Rasa"
            mark, lost = cluster.haproxy_mark(), {name: 0}
            try:
                result = await alternate({name: (cluster.url, True)}, load, args.scale_rounds, warmup, dropped=lost)
                totals[name].add(result[name])
            finally:
                dropped[name] = dropped.get(name, 0) + lost[name]
                downs.setdefault(name, []).extend(cluster.haproxy_downs(mark))
                await cluster.stop()
    return totals


def part_scale(args: argparse.Namespace) -> dict[str, Any]:
    say("== 1. Scale-out with the real engine: 1 gateway + 1 Rasa vs 2 gateways + 2 Rasa behind HAProxy ==")
    say(f"os.cpu_count() = {os.cpu_count()}")
    ok, help_text = cluster_available()
    if not ok:
        say(f"`python -m gateway cluster` is not available: {help_text.splitlines()[-1] if help_text else '?'}")
        say()
        return {"skipped": "python -m gateway cluster is not available", "cpu_count": os.cpu_count()}
    say(f"{args.scale_shoppers} shoppers x {args.scale_turns} turns per round ({', '.join(MESSAGES)}), "
        f"{args.scale_rounds} rounds per topology" + ("" if args.scale_together else f", {args.scale_blocks} blocks"))
    dropped: dict[str, int] = {}
    downs: dict[str, list[str]] = {}
    totals = asyncio.run(_scale(args, dropped, downs))
    one, two = totals["1 gateway + 1 Rasa"], totals["2 gateway + 2 Rasa"]
    say()
    table(totals, "turns/s")
    for name in totals:
        if dropped.get(name) or downs.get(name):
            say(f"{name}: {dropped.get(name, 0)} sockets dropped mid-round; HAProxy took a gateway out "
                f"{len(downs.get(name, []))} times" + (f", e.g. {downs[name][0]}" if downs.get(name) else ""))
    ratio = two.throughput / one.throughput
    say(f"throughput 2+2 / 1+1: {ratio:.2f}x  ({verdict(ratio >= SCALE_TARGET)}: >= {SCALE_TARGET}x)")
    say(f"p50 2+2 / 1+1: {two.percentile(50) / one.percentile(50):.2f}x, p99: {two.percentile(99) / one.percentile(99):.2f}x")
    say()
    return {"cpu_count": os.cpu_count(),
            "load": {"shoppers": args.scale_shoppers, "turns_per_shopper": args.scale_turns, "rounds": args.scale_rounds,
                     "messages": MESSAGES, "topologies_together": args.scale_together},
            "one_plus_one": figures(one), "two_plus_two": figures(two), "throughput_ratio": ratio,
            "p50_ratio": two.percentile(50) / one.percentile(50), "p99_ratio": two.percentile(99) / one.percentile(99),
            "sockets_dropped": dropped, "haproxy_took_a_gateway_out": downs,
            "target": f"2+2 throughput >= {SCALE_TARGET}x 1+1", "target_met": ratio >= SCALE_TARGET}


# -- main ---------------------------------------------------------------------------------------------


PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "scale": part_scale, "overhead": part_overhead, "memory": part_memory}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="scale,overhead,memory", help="which parts, in order (default: all three)")
    parser.add_argument("--scale-shoppers", type=int, default=16, help="1: concurrent shoppers")
    parser.add_argument("--scale-turns", type=int, default=12, help="1: turns per shopper per round")
    parser.add_argument("--scale-rounds", type=int, default=3, help="1: rounds per topology")
    parser.add_argument("--scale-blocks", type=int, default=2, help="1: topology blocks when not --scale-together")
    parser.add_argument("--scale-together", action=argparse.BooleanOptionalAction, default=True,
                        help="1: run both topologies at once and alternate rounds between them (default); "
                             "--no-scale-together: one at a time, in alternating blocks")
    parser.add_argument("--cluster-timeout", type=float, default=600, help="1: seconds to wait for `Cluster ready`")
    parser.add_argument("--overhead-shoppers", type=int, default=32, help="2: concurrent sockets")
    parser.add_argument("--overhead-turns", type=int, default=60, help="2: round trips per socket per round")
    parser.add_argument("--overhead-rounds", type=int, default=5, help="2: alternating rounds")
    parser.add_argument("--log-level", default="INFO", help="2, 3: the gateway's LOG_LEVEL (production default INFO)")
    parser.add_argument("--sockets", type=int, default=10_000, help="3: idle sockets")
    parser.add_argument("--sources", type=int, default=4, help="3: 127.0.0.x source addresses to spread them over")
    parser.add_argument("--deflate", action=argparse.BooleanOptionalAction, default=True,
                        help="3: the sockets ask for permessage-deflate, as browsers do (default; --no-deflate: not)")
    # Internal: the servers and clients the bench starts as processes of their own.
    parser.add_argument("--serve", choices=("fake-rasa", "proxy", "echo", "idle-clients"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rasa", default="", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--source-list", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        serve: dict[str, Callable[[], None]] = {
            "fake-rasa": lambda: serve_fake_rasa(args.port), "proxy": lambda: serve_proxy(args.port, args.rasa),
            "echo": lambda: serve_echo(args.port),
            "idle-clients": lambda: serve_idle_clients(args.url, args.count, args.source_list.split(","),
                                                             args.concurrency, args.deflate)}
        serve[args.serve]()
        return 0

    raise_nofile()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    result: dict[str, Any] = {}
    if RESULTS.is_file():  # a run of some parts keeps the others' last figures
        with contextlib.suppress(ValueError):
            result = json.loads(RESULTS.read_text())
    result.update(cpu_count=os.cpu_count(), finished_at=None)
    for part in parts:
        result[part] = PARTS[part](args)
        result[part]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    say(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
