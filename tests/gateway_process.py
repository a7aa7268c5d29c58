"""A gateway as its own process (`python -m gateway gateway`), for tests that kill it or send
it signals, and waiting until it is ready."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import IO

import aiohttp

from gateway.rasa_runtime import REPO_ROOT


def start_gateway_process(env: dict[str, str], output: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway", "gateway"], cwd=REPO_ROOT, env=env,
                            stdout=output, stderr=subprocess.STDOUT)


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until `/readyz` answers 200; fails if the process ends or `timeout` passes first."""
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the gateway did not come up"
            await asyncio.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


