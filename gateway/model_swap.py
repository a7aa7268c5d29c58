"""`./aftersales train` on a running stack: score the new model against the running one on
the held-out first messages (gateway/model_eval.py), print both side by side, and load the
new one into every running Rasa server (`PUT /model`) only if it scores no worse.

Conversations survive the swap: Rasa's trackers are in Redis with `REDIS_URL`, and without it
in a store that lives as long as the Rasa process, not as long as one model
(rasa_project/process_store.py). Rasa's lock store is kept by Rasa itself. The servers are
swapped one after another, so with several one is always serving while another loads.

A command-line tool: blocking HTTP calls (urllib) and subprocesses, no event loop.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gateway.model_eval import EVALUATION_DIR, Score, examples, no_worse, side_by_side
from gateway.rasa_runtime import RASA_PROJECT, RasaSetupError, cache_dir, rasa_env

STATUS_TIMEOUT_SECONDS = 5.0
LOAD_TIMEOUT_SECONDS = 600.0  # loading a model takes 10-40 s on 2 cores


class SwapError(RuntimeError):
    """A running Rasa server could not be read or did not take the new model."""


@dataclass(frozen=True)
class RasaServer:
    """One running Rasa server's HTTP API (`--enable-api`, with its `--auth-token`)."""

    url: str
    token: str = ""

    def _request(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        query = f"?token={urllib.parse.quote(self.token)}" if self.token else ""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url.rstrip('/')}{path}{query}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise SwapError(f"{self.url}{path}: HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SwapError(f"{self.url}{path}: {getattr(exc, 'reason', exc)}") from exc
        return json.loads(raw) if raw else None

    def serving(self) -> str:
        """The file name of the model this server serves."""
        status = self._request("GET", "/status", None, STATUS_TIMEOUT_SECONDS)
        return str((status or {}).get("model_file") or "")

    def load(self, model: Path) -> None:
        self._request("PUT", "/model", {"model_file": str(model)}, LOAD_TIMEOUT_SECONDS)

    def score(self) -> Score:
        """The served model's score, read through the server's own NLU (`POST /model/parse`:
        the same pipeline as a shopper's message, nothing kept)."""
        result = Score()
        for example in examples():
            parsed = self._request("POST", "/model/parse", {"text": example.text}, STATUS_TIMEOUT_SECONDS)
            result.add(example, ((parsed or {}).get("intent") or {}).get("name"))
        return result


def _corpus_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(EVALUATION_DIR.glob("corpus*/first_messages_*.yml")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def score(venv: Path, model: Path) -> Score:
    """The model's score on the held-out first messages; kept beside the model (for as long as
    the held-out sets do not change), so the running model is not scored again every time."""
    cached = model.with_name(model.name.removesuffix(".tar.gz") + ".score.json")
    made = model.stat()
    digest = f"{_corpus_digest()}-{made.st_size}-{made.st_mtime_ns}"  # a retrained file is scored again
    if cached.is_file():
        data = json.loads(cached.read_text(encoding="utf-8"))
        if data.get("held_out") == digest:
            return Score.from_json(data["score"])
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "score.json"
        log_path = cache_dir() / "rasa-evaluate.log"
        with open(log_path, "ab") as log_file:
            done = subprocess.run([str(venv / "bin" / "python"), "evaluate_model.py", str(model), str(out)],
                                  cwd=RASA_PROJECT, env=rasa_env(venv, {"LOG_LEVEL": "ERROR"}),
                                  stdout=log_file, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0 or not out.is_file():
            raise RasaSetupError(f"scoring {model.name} failed (exit {done.returncode}); see {log_path}")
        result = Score.from_json(json.loads(out.read_text(encoding="utf-8")))
    cached.write_text(json.dumps({"held_out": digest, "score": result.to_json()}, ensure_ascii=False),
                      encoding="utf-8")
    return result


def running_servers(urls: list[str], token: str) -> dict[RasaServer, str]:
    """The servers among `urls` that answer, with the model each serves."""
    found: dict[RasaServer, str] = {}
    for url in urls:
        server = RasaServer(url, token)
        try:
            found[server] = server.serving()
        except SwapError:
            continue
    return found


def swap_if_no_worse(venv: Path, candidate: Path, servers: dict[RasaServer, str],
                     say: Callable[[str], None], force: bool = False) -> bool:
    """Score `candidate` against what the servers run, print both, and load it into each
    server unless it scores worse (or `force`). True when every server now serves it."""
    todo = {server: name for server, name in servers.items() if name != candidate.name}
    if not todo:
        say(f"Every running Rasa server already serves {candidate.name}.")
        return True
    # Scored against the weakest model running (with several servers, normally all the same one).
    say(f"Scoring the new model ({candidate.name}) and the running one on the held-out first messages...")
    new_score = score(venv, candidate)
    running = {name: server.score() for server, name in todo.items()}
    current_name, old_score = min(running.items(), key=lambda item: item[1].right_total)
    for line in side_by_side(old_score, new_score, current_name.removesuffix(".tar.gz"),
                             candidate.name.removesuffix(".tar.gz")):
        say(line)
    if not no_worse(new_score, old_score) and not force:
        say("Not swapped: the new model scores worse than the running one (in all or in one language); "
            "the running servers keep their model (--swap-anyway swaps it all the same).")
        return False
    for server in todo:
        started = time.monotonic()
        say(f"{server.url}: loading {candidate.name} (this server's turns wait for it, about 10-40 s)")
        server.load(candidate)
        now = server.serving()
        if now != candidate.name:
            raise SwapError(f"{server.url} serves {now or 'nothing'} after loading {candidate.name}")
        say(f"{server.url}: now serving {candidate.name} (loaded in {time.monotonic() - started:.0f} s; "
            "conversations in progress carry on)")
    return True
