"""`./aftersales cluster`: the production topology on one machine, started, watched and stopped
by one command: Redis with AOF persistence, an action server, N Rasa servers (trackers and
locks in that Redis), N gateways (everything shared in that Redis) and HAProxy in front
(round robin, websocket upgrade, no sticky sessions; each gateway's /readyz as its check).

Every part runs as its own process with its log in `<dir>/logs/`; a part that exits while the
cluster runs is started again (as an orchestrator's restart policy does), on the same port.
`<dir>/cluster.json` says where each part listens and its process id. Ctrl-C or SIGTERM
stops the gateways first (each drains: /readyz turns 503, the accepted messages are
answered), then HAProxy, Rasa, the action server and Redis (its AOF flushed).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bot.config import Settings, ensure_data_keys, ensure_secret
from bot.files import write_private
from gateway.rasa_runtime import RASA_PROJECT, RasaProcesses, RasaSetupError

log = logging.getLogger("gateway.cluster")

READY_TIMEOUT_SECONDS = 300.0
RESTART_AFTER_SECONDS, RESTART_MAX_SECONDS = 1.0, 30.0
STOP_GRACE_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback URLs we built)
            return bool(resp.status == 200)
    except Exception:
        return False


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Part:
    """One supervised process of the cluster."""

    name: str
    command: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    port: int
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    def start(self, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{self.name}.log", "ab") as log_file:
            self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def haproxy_maxconn() -> int:
    """As many connections as this machine's file limit lets HAProxy hold (two per connection)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1000, min(50_000, (hard if hard != resource.RLIM_INFINITY else 100_000) // 2 - 100))


def haproxy_config(port: int, gateways: list[Part], host: str = "127.0.0.1") -> str:
    """Round robin over the gateways, no stickiness: any gateway serves any shopper. Only
    socket.io's long-polling transport, whose requests must reach the gateway that opened
    the session, is hashed by client address (its websocket transport is round robin too)."""
    servers = "\n".join(f"    server {g.name} 127.0.0.1:{g.port} check" for g in gateways)
    return f"""global
    maxconn {haproxy_maxconn()}

defaults
    mode http
    option forwardfor
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout client-fin 5s
    timeout http-request 10s
    # /readyz asks Redis and every Rasa server: give it time on a busy machine, and take a
    # gateway out (closing its sockets) only after three failed checks in a row.
    timeout check 5s
    default-server inter 2s fall 3 rise 2 on-marked-down shutdown-sessions

frontend shop
    bind {host}:{port}
    acl socketio_polling path_beg /socket.io/ url_param(transport) -m str polling
    use_backend socketio_polling if socketio_polling
    default_backend gateways

backend gateways
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}

backend socketio_polling
    balance source
    hash-type consistent
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""


@dataclass
class Cluster:
    gateways: int
    rasa: int
    port: int
    directory: Path
    venv: Path
    model: Path
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    parts: list[Part] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self) -> None:
        for binary, package in (("redis-server", "redis-server"), ("haproxy", "haproxy")):
            if shutil.which(binary) is None:
                raise RasaSetupError(f"the cluster needs {binary} (Debian: apt-get install {package}); "
                                     "./aftersales cluster installs it")
        data_dir = self.directory / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        base = Settings(data_dir=data_dir, data_keys=self.environ.get("DATA_KEYS", ""),
                        secret=self.environ.get("GATEWAY_SECRET", ""))
        keys = ensure_data_keys(base).export()  # one set for every gateway and the action server
        secret = ensure_secret(base)
        rasa_token = self.environ.get("RASA_TOKEN") or os.urandom(24).hex()
        redis_port = free_port()
        redis_dir = self.directory / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.parts.append(Part(
            "redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--dir", str(redis_dir),
                      "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"],
            dict(self.environ), functools.partial(redis_answers, redis_port), redis_port))

        actions_port = free_port()
        servers = [RasaProcesses(venv=self.venv, model=self.model, rasa_port=free_port(), actions_port=actions_port,
                                 auth_token=rasa_token, data_keys=keys, log_dir=self.log_dir, redis_url=redis_url)
                   for _ in range(self.rasa)]
        first = servers[0]
        self.parts.append(Part("actions", first.command_for("actions"), first.env_for("actions"),
                               first.actions_ready, actions_port, cwd=RASA_PROJECT))
        for n, server in enumerate(servers, 1):
            self.parts.append(Part(f"rasa-{n}", server.command_for("rasa"), server.env_for("rasa"),
                                   server.server_ready, server.rasa_port, cwd=RASA_PROJECT))

        gateway_parts = []
        for n in range(1, self.gateways + 1):
            port = free_port()
            env = {**self.environ, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port),
                   "GATEWAY_ID": f"gateway-{n}", "REDIS_URL": redis_url,
                   "RASA_URL": ",".join(s.rasa_url for s in servers), "RASA_TOKEN": rasa_token,
                   "DATA_DIR": str(data_dir), "DATA_KEYS": keys, "GATEWAY_SECRET": secret,
                   "TRUSTED_PROXIES": self.environ.get("TRUSTED_PROXIES", "127.0.0.1"),
                   "GATEWAY_PUBLIC_URL": self.environ.get("GATEWAY_PUBLIC_URL", self.url)}
            gateway_parts.append(Part(f"gateway-{n}", [sys.executable, "-m", "gateway", "gateway"], env,
                                      functools.partial(http_ok, f"http://127.0.0.1:{port}/readyz"), port))
        self.parts += gateway_parts
        config = self.directory / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, gateway_parts), encoding="utf-8")
        self.parts.append(Part("haproxy", ["haproxy", "-db", "-f", str(config)], dict(self.environ),
                               functools.partial(http_ok, f"{self.url}/readyz"), self.port))

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def describe(self) -> dict[str, object]:
        return {"url": self.url, "logs": str(self.log_dir), "supervisor_pid": os.getpid(),
                "parts": [{"name": p.name, "port": p.port, "pid": p.proc.pid if p.proc else None,
                           "restarts": p.restarts} for p in self.parts]}

    def write_description(self) -> None:
        write_private(self.directory / "cluster.json", json.dumps(self.describe(), indent=2))

    def _wait(self, parts: list[Part], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(parts)
        while waiting:
            for p in waiting:
                if p.proc is not None and p.proc.poll() is not None:
                    raise RasaSetupError(f"{p.name} exited with code {p.proc.returncode} while starting; "
                                         f"see {self.log_dir / (p.name + '.log')}")
            waiting = [p for p in waiting if not p.ready()]
            if waiting and time.monotonic() > deadline:
                raise RasaSetupError(f"not ready within {timeout:.0f} s: {', '.join(p.name for p in waiting)}; "
                                     f"logs in {self.log_dir}")
            if waiting:
                time.sleep(0.5)

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Start every part in dependency order and wait until the load balancer is ready."""
        redis = self.part("redis")
        redis.start(self.log_dir)
        self._wait([redis], 30)
        engine = [p for p in self.parts if p.name == "actions" or p.name.startswith("rasa-")]
        for p in engine:
            p.start(self.log_dir)
        gateways = [p for p in self.parts if p.name.startswith("gateway-")]
        # The first gateway alone first: it creates what the others then share (the demo agent).
        gateways[0].start(self.log_dir)
        deadline = time.monotonic() + 30
        while not http_ok(f"http://127.0.0.1:{gateways[0].port}/healthz") and time.monotonic() < deadline:
            if not gateways[0].running:
                break
            time.sleep(0.2)
        for p in gateways[1:]:
            p.start(self.log_dir)
        self._wait(engine + gateways, timeout)
        haproxy = self.part("haproxy")
        haproxy.start(self.log_dir)
        self._wait([haproxy], 30)
        self.write_description()

    def supervise(self, stop: threading.Event, every: float = 0.5) -> None:
        """Start again any part that exits, with a growing pause if it keeps exiting."""
        while not stop.wait(every):
            changed = False
            for p in self.parts:
                if p.proc is None or p.running:
                    continue
                now = time.monotonic()
                if p.next_start == 0.0:
                    pause = min(RESTART_MAX_SECONDS, RESTART_AFTER_SECONDS * 2 ** min(p.restarts, 5))
                    log.warning("cluster part exited; starting it again",
                                extra={"part": p.name, "code": p.proc.returncode, "in_seconds": pause})
                    p.next_start = now + pause
                elif now >= p.next_start and not stop.is_set():
                    p.start(self.log_dir)
                    p.restarts += 1
                    p.next_start = 0.0
                    changed = True
            if changed:
                self.write_description()

    def stop(self) -> None:
        """Gateways first (they drain in parallel), then the load balancer, Rasa, actions, Redis."""
        order = ([p for p in self.parts if p.name.startswith("gateway-")], [self.part("haproxy")],
                 [p for p in self.parts if p.name.startswith("rasa-")], [self.part("actions")], [self.part("redis")])
        for group in order:
            threads = [threading.Thread(target=p.stop) for p in group]
            for t in threads:
                t.start()
            for t in threads:
                t.join()


def run_cluster(gateways: int, rasa: int, port: int, directory: Path, venv: Path, model: Path,
                say: Callable[[str], None]) -> int:
    if gateways < 1 or rasa < 1:
        raise RasaSetupError("--gateways and --rasa must be at least 1")
    cluster = Cluster(gateways, rasa, port, directory.resolve(), venv, model)
    cluster.plan()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    say(f"Starting the cluster in {cluster.directory}: Redis (AOF), an action server, {rasa} Rasa server(s), "
        f"{gateways} gateway(s), HAProxy on :{port}. Rasa takes about a minute to load.")
    try:
        cluster.start()
        say(f"Cluster ready at {cluster.url}  (web chat {cluster.url}/, console {cluster.url}/console)")
        say(f"  parts, ports and pids: {cluster.directory / 'cluster.json'}; logs: {cluster.log_dir}")
        agent_note = cluster.directory / "data" / "demo-agent-password.txt"
        if agent_note.exists():
            say(f"  agent console: user 'demo', password in {agent_note}")
        say("Ctrl-C stops everything.")
        cluster.supervise(stop)
    finally:
        say("Stopping the cluster: the gateways drain first ...")
        cluster.stop()
        say("Stopped.")
    return 0

