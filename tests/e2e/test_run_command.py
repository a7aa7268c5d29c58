"""`./aftersales run` as a shop starts it: the gateway, the Rasa server and the action server
come up together, the shopper is answered, Rasa's HTTP API is not open to other local
processes, and SIGTERM stops all three. A token that starts with "-" (as one in 64 generated
ones does) reaches Rasa whole."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.rasa_runtime import REPO_ROOT
from tests.conftest import free_port

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("token", ["", "-dash-first-" + "x" * 32], ids=["generated", "leading-dash"])
async def test_run_starts_everything_with_rasa_behind_a_token(rasa_install: tuple[Path, Path], tmp_path: Path,
                                                              token: str) -> None:
    gateway_port, rasa_port, actions_port = free_port(), free_port(), free_port()
    env = {**os.environ, "GATEWAY_PORT": str(gateway_port), "RASA_URL": f"http://127.0.0.1:{rasa_port}",
           "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "warning", "RASA_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--actions-port", str(actions_port)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                try:
                    async with http.get(f"http://127.0.0.1:{gateway_port}/healthz") as resp:
                        if (await resp.json())["rasa"] == "up":
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the stack did not come up"
                await asyncio.sleep(1)
            async with http.post(f"http://127.0.0.1:{gateway_port}/webhooks/rest/webhook",
                                 json={"sender": "run-1", "message": "I want to return my shoes"}) as resp:
                assert resp.status == 200 and "order" in (await resp.json())[0]["text"].lower()
            # Another local process reading trackers or replacing the model is refused.
            async with http.get(f"http://127.0.0.1:{rasa_port}/conversations/rest:run-1/tracker") as resp:
                assert resp.status == 401
            async with http.put(f"http://127.0.0.1:{rasa_port}/model", json={"model_file": "/tmp/x.tar.gz"}) as resp:
                assert resp.status == 401
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    said = proc.stdout.read().decode() if proc.stdout else ""
    # The operator is told where the console is and where the new demo agent's password is.
    assert f"agent console:      http://127.0.0.1:{gateway_port}/console" in said
    assert f"its password is in {tmp_path / 'data'}" in said
    async with aiohttp.ClientSession() as http:
        for port in (gateway_port, rasa_port, actions_port):  # all three stopped
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/"):
                    pass
