"""Latency and throughput of one conversation turn: straight to Rasa's REST endpoint
(the baseline) versus the same turn through the gateway's web chat websocket.

Both are measured in the same run, against the same real Rasa server and action server,
in alternating rounds so that drift on the machine hits both equally. The gateway runs
in its own process (`python -m gateway gateway`), as in production.

    ./aftersales bench [--shoppers 8] [--turns 40] [--rounds 3]

Prints p50/p99 latency and throughput for both paths and their ratios; the targets are
gateway p50 <= 1.05 x Rasa p50 and gateway throughput >= 0.95 x Rasa throughput.
Also writes the figures as JSON to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.rasa_runtime import RasaProcesses, ensure_model, ensure_rasa_venv  # noqa: E402

MESSAGES = ["hello", "are you a bot?", "thanks", "bye"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def add(self, other: "Sample") -> None:
        self.latencies += other.latencies
        self.elapsed += other.elapsed

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def direct_shopper(session: aiohttp.ClientSession, rasa_url: str, turns: int, out: list[float]) -> None:
    sender = f"bench-direct-{uuid.uuid4().hex}"
    for i in range(turns):
        body = {"sender": sender, "message": MESSAGES[i % len(MESSAGES)], "metadata": {"language": "en"}}
        started = time.perf_counter()
        async with session.post(f"{rasa_url}/webhooks/rest/webhook", json=body) as resp:
            replies = await resp.json()
        out.append(time.perf_counter() - started)
        assert replies, "Rasa answered nothing"


async def gateway_shopper(session: aiohttp.ClientSession, ws_url: str, turns: int, out: list[float]) -> None:
    async with session.ws_connect(ws_url) as ws:
        await ws.send_json({"type": "hello", "token": None, "locale": "en"})
        while (await ws.receive_json())["type"] != "session":
            pass
        for i in range(turns):
            started = time.perf_counter()
            await ws.send_json({"type": "message", "id": uuid.uuid4().hex, "text": MESSAGES[i % len(MESSAGES)]})
            while True:
                frame = await ws.receive_json()
                if frame["type"] == "reply":
                    break
                if frame["type"] == "error":
                    raise RuntimeError(f"gateway refused a message: {frame}")
            out.append(time.perf_counter() - started)


async def run_round(kind: str, target: str, shoppers: int, turns: int) -> Sample:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        worker = direct_shopper if kind == "direct" else gateway_shopper
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, target, turns, latencies) for _ in range(shoppers)))
        elapsed = time.perf_counter() - started
    return Sample(latencies, elapsed)


def start_gateway(rasa_url: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, GATEWAY_PORT=str(port), RASA_URL=rasa_url, LOG_LEVEL="warning",
               DATA_DIR=str(data_dir), WEBCHAT_RATE_BURST="100000", WEBCHAT_RATE_PER_SECOND="100000")
    return subprocess.Popen([sys.executable, "-m", "gateway", "gateway"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


async def bench(args: argparse.Namespace, rasa_url: str, gateway_port: int) -> dict[str, object]:
    ws_url = f"ws://127.0.0.1:{gateway_port}/webchat/ws"
    await wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
    # Warm-up: TensorFlow graphs, connection pools, the action server.
    await run_round("direct", rasa_url, 2, 8)
    await run_round("gateway", ws_url, 2, 8)
    totals = {"direct": Sample(), "gateway": Sample()}
    for number in range(args.rounds):
        order = ["direct", "gateway"] if number % 2 == 0 else ["gateway", "direct"]
        for kind in order:
            sample = await run_round(kind, rasa_url if kind == "direct" else ws_url, args.shoppers, args.turns)
            totals[kind].add(sample)
            print(f"  round {number + 1} {kind:8} p50 {sample.percentile(50):7.1f} ms  "
                  f"{sample.throughput:6.1f} turns/s", flush=True)
    direct, gateway = totals["direct"], totals["gateway"]
    result = {
        "shoppers": args.shoppers, "turns_per_shopper": args.turns, "rounds": args.rounds,
        "direct": {"p50_ms": direct.percentile(50), "p99_ms": direct.percentile(99),
                   "throughput": direct.throughput, "turns": len(direct.latencies)},
        "gateway": {"p50_ms": gateway.percentile(50), "p99_ms": gateway.percentile(99),
                    "throughput": gateway.throughput, "turns": len(gateway.latencies)},
    }
    result["p50_ratio"] = gateway.percentile(50) / direct.percentile(50)
    result["p99_ratio"] = gateway.percentile(99) / direct.percentile(99)
    result["throughput_ratio"] = gateway.throughput / direct.throughput
    result["mean_overhead_ms"] = (statistics.mean(gateway.latencies) - statistics.mean(direct.latencies)) * 1000
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoppers", type=int, default=8, help="concurrent shoppers")
    parser.add_argument("--turns", type=int, default=40, help="turns per shopper per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per path")
    args = parser.parse_args()

    venv = ensure_rasa_venv()
    model = ensure_model(venv)
    rasa = RasaProcesses(venv=venv, model=model, rasa_port=free_port(), actions_port=free_port())
    gateway_port = free_port()
    print("Starting Rasa, its action server and the gateway...", flush=True)
    rasa.start()
    gateway = None
    try:
        rasa.wait_ready(240)
        data_dir = ROOT / "var" / "bench"
        gateway = start_gateway(rasa.rasa_url, gateway_port, data_dir)
        result = asyncio.run(bench(args, rasa.rasa_url, gateway_port))
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(10)
        rasa.stop()

    d, g = result["direct"], result["gateway"]
    assert isinstance(d, dict) and isinstance(g, dict)
    print()
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'turns/s':>10}")
    print(f"{'Rasa REST (baseline)':24}{d['p50_ms']:10.1f}{d['p99_ms']:10.1f}{d['throughput']:10.1f}")
    print(f"{'gateway web chat':24}{g['p50_ms']:10.1f}{g['p99_ms']:10.1f}{g['throughput']:10.1f}")
    print(f"{'ratio gateway/baseline':24}{result['p50_ratio']:10.3f}{result['p99_ratio']:10.3f}"
          f"{result['throughput_ratio']:10.3f}")
    print(f"mean overhead per turn: {result['mean_overhead_ms']:.2f} ms")
    p50_ok = float(result["p50_ratio"]) <= 1.05  # type: ignore[arg-type]
    tput_ok = float(result["throughput_ratio"]) >= 0.95  # type: ignore[arg-type]
    print(f"target p50 <= 1.05x: {'met' if p50_ok else 'NOT met'}; "
          f"target throughput >= 0.95x: {'met' if tput_ok else 'NOT met'}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
