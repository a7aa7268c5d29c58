"""`./aftersales train` on a running stack swaps the model only when it scores no worse, and
no conversation is dropped by the swap.

A Rasa server and an action server of this module's own serve the shipped model, with Rasa's
trackers in the Rasa process's memory (no Redis: the hard case, since Rasa makes a new tracker
store for each model it loads; rasa_project/process_store.py keeps them). A shopper is in the
middle of a return when the designer swaps:

- a weak model (the same project trained for one epoch) is scored, printed beside the running
  one and refused; the server keeps serving the shipped model and the return carries on;
- a model that scores the same (the shipped model, as another file) is swapped in; the
  shopper's message sent while the server loads it is answered, and the return completes
  where it was, under the new model.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from gateway.model_swap import RasaServer
from gateway.rasa_runtime import RASA_PROJECT, REPO_ROOT, TRAINING_INPUTS, RasaProcesses, rasa_env
from tests.conftest import RunningGateway, free_port, make_settings, running, start_gateway
from tests.flows.conftest import text

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def weak_model(rasa_install: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped project with its intent classifier trained for one epoch instead of 120."""
    venv, _ = rasa_install
    project = tmp_path_factory.mktemp("weak-project")
    for name in (*TRAINING_INPUTS, "components", "credentials.yml"):
        source = RASA_PROJECT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    config = (project / "config.yml").read_text(encoding="utf-8")
    assert "    epochs: 120\n" in config
    (project / "config.yml").write_text(config.replace("    epochs: 120\n", "    epochs: 1\n"), encoding="utf-8")
    out = tmp_path_factory.mktemp("weak-model")
    subprocess.run([str(venv / "bin" / "rasa"), "train", "--out", str(out), "--fixed-model-name", "model-weak"],
                   cwd=project, env=rasa_env(venv), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return next(out.glob("model-weak*.tar.gz"))


@pytest.fixture(scope="module")
def swap_stack(rasa_install: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RasaProcesses]:
    venv, model = rasa_install
    # A copy: the cache's own file is shared by every test's Rasa and must stay as it is.
    own = tmp_path_factory.mktemp("swap-models") / "model-shipped.tar.gz"
    shutil.copy(model, own)
    procs = RasaProcesses(venv=venv, model=own, rasa_port=free_port(), actions_port=free_port(),
                          auth_token="swap-test-token", log_dir=tmp_path_factory.mktemp("swap-rasa-logs"))
    with running(procs):
        yield procs


@pytest.fixture
async def gateway(swap_stack: RasaProcesses, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """This module's gateway (tests/flows/conftest.py's shoppers use it)."""
    gw, runner = await start_gateway(make_settings(tmp_path, swap_stack.rasa_url, rasa_token="swap-test-token"))
    try:
        yield gw
    finally:
        await runner.cleanup()


async def train_command(stack: RasaProcesses, model: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "train", "--model", str(model), "--url", stack.rasa_url,
        cwd=REPO_ROOT, env={**rasa_env(stack.venv), "PATH": "/usr/bin:/bin", "RASA_TOKEN": "swap-test-token",
                            "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def test_a_worse_model_is_refused_and_a_no_worse_one_swapped_without_dropping_the_shopper(
        shopper_factory, swap_stack: RasaProcesses, weak_model: Path, tmp_path: Path) -> None:
    server = RasaServer(swap_stack.rasa_url, "swap-test-token")
    assert server.serving() == "model-shipped.tar.gz"

    # A shopper is in the middle of a return: asked why.
    shopper = await shopper_factory("en")
    await shopper.say("I want to return my order")
    r = await shopper.say("AS10001")
    assert '"changed_mind"' in str([b["payload"] for reply in r for b in reply.get("buttons") or []])

    # The weak model: scored beside the running one, refused; nothing changes for the shopper.
    async with shopper.chat.listening():  # the shopper's page stays open meanwhile
        refused = await train_command(swap_stack, weak_model)
        out = (await refused.communicate())[0].decode()
    assert refused.returncode == 1, out
    assert "Not swapped: the new model scores worse" in out
    figures = re.search(r"^all\s+(\d+)/(\d+) [\d.]+%\s+(\d+)/(\d+) [\d.]+%\s+([+-]\d+)$", out, re.M)
    assert figures, out  # the two totals side by side
    running_right, total, weak_right, weak_total, change = (int(g) for g in figures.groups())
    assert total == weak_total and weak_right < running_right and change == weak_right - running_right, out
    assert re.search(r"^fresh set, zh\s+\d+/\d+\s+\d+/\d+", out, re.M), out  # per held-out set and language
    assert server.serving() == "model-shipped.tar.gz"
    r = await shopper.say("I just changed my mind")
    assert "worn" in text(r).lower() or "opened" in text(r).lower(), text(r)  # the return goes on

    # The same model as another file scores the same: swapped. The shopper writes while it loads.
    retrained = tmp_path / "model-retrained.tar.gz"
    shutil.copy(swap_stack.model, retrained)
    async with shopper.chat.listening():
        swapping = await train_command(swap_stack, retrained)
        assert swapping.stdout is not None
        seen = ""
        async with asyncio.timeout(300):
            while "loading model-retrained.tar.gz" not in seen:
                line = await swapping.stdout.readline()
                assert line, seen
                seen += line.decode()
    during = asyncio.create_task(shopper.say("yes, still unworn"))
    seen += (await swapping.communicate())[0].decode()
    assert swapping.returncode == 0, seen
    assert f"{swap_stack.rasa_url}: now serving model-retrained.tar.gz" in seen
    assert re.search(r"^all\s+(\d+)/(\d+) .*\s\+0$", seen, re.M), seen  # scored the same
    assert server.serving() == "model-retrained.tar.gz"

    r = await during  # answered, and the return is where it was: the refund offer, then pick-up
    assert "¥599.00" in text(r), text(r)
    r = await shopper.press(r, "pickup")
    assert "Return accepted" in text(r), text(r)
