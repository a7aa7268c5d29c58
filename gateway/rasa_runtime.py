"""Everything needed to run the real Rasa engine next to the gateway.

Rasa 3.6 needs Python 3.10 and pins old libraries, so it gets its own virtual environment
and runs as two processes of its own: the Rasa server and the action server.

- `find_python310()`: `RASA_PYTHON`, then `python3.10` on PATH, then pyenv's versions.
- `ensure_rasa_venv()`: created once per requirements hash under the cache directory
  (`AFTERSALES_CACHE_DIR`, default `~/.cache/aftersales-gateway`) and reused afterwards.
- `ensure_model()`: trained when the training data changed, cached by the data's hash.
- `RasaProcesses`: starts both servers, waits until they answer, stops them cleanly.

This module runs in the gateway's CLI and test fixtures, never inside the event loop.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator
from urllib.parse import unquote, urlsplit

import yaml

from bot.files import write_private

log = logging.getLogger("gateway.rasa_runtime")

REPO_ROOT = Path(__file__).resolve().parent.parent
RASA_PROJECT = REPO_ROOT / "rasa_project"
TRAINING_INPUTS = ("config.yml", "domain.yml", "data", "requirements.txt")


class RasaSetupError(RuntimeError):
    """Rasa cannot be set up or started; the message says what to do."""


def cache_dir() -> Path:
    configured = os.environ.get("AFTERSALES_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "aftersales-gateway"
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise setup steps between concurrent runs (two terminals, parallel CI jobs)."""
    path = cache_dir() / f"{name}.lock"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _python_version(executable: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([executable, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def _pyenv_roots() -> list[Path]:
    roots: list[Path] = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and out.stdout.strip():
                roots.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    roots.append(Path.home() / ".pyenv")
    return roots


def find_python310() -> Path:
    """A Python 3.10 interpreter for Rasa, or a `RasaSetupError` saying how to get one."""
    candidates: list[str] = []
    if os.environ.get("RASA_PYTHON"):
        candidates.append(os.environ["RASA_PYTHON"])
    on_path = shutil.which("python3.10")
    if on_path:
        candidates.append(on_path)
    for root in _pyenv_roots():
        versions = sorted(root.glob("versions/3.10*/bin/python3.10"), reverse=True)
        candidates += [str(v) for v in versions]
    for candidate in candidates:
        if _python_version(candidate) == (3, 10):
            return Path(candidate)
    raise RasaSetupError(
        "Rasa 3.6 needs Python 3.10, and none was found "
        f"(looked at RASA_PYTHON, python3.10 on PATH, and pyenv under {', '.join(map(str, _pyenv_roots()))}). "
        "Install one, e.g. `pyenv install 3.10` or `apt-get install python3.10 python3.10-venv`, "
        "or set RASA_PYTHON to its path.")


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            h.update(str(file.relative_to(RASA_PROJECT)).encode())
            h.update(file.read_bytes())
    return h.hexdigest()[:16]


def _run_logged(cmd: list[str], log_path: Path, what: str, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> None:
    with open(log_path, "w") as out:
        result = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise RasaSetupError(f"{what} failed (exit {result.returncode}); full log: {log_path}\n{tail}")


def ensure_rasa_venv(say: IO[str] = sys.stderr) -> Path:
    """The Rasa venv's directory; created and installed only when its requirements changed."""
    python = find_python310()
    requirements = RASA_PROJECT / "requirements.txt"
    constraints = RASA_PROJECT / "constraints.txt"
    key = _digest([requirements, constraints], extra=str(python.resolve()))
    venv = cache_dir() / f"rasa-venv-{key}"
    stamp = venv / ".installed"
    if stamp.is_file():
        return venv
    with _locked("rasa-venv"):
        if stamp.is_file():
            return venv
        if venv.exists():
            shutil.rmtree(venv)  # an interrupted install: start over
        say.write(f"Installing Rasa 3.6 into {venv} (Python {python}); this takes 2-3 minutes once...\n")
        say.flush()
        started = time.monotonic()
        subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        log_path = cache_dir() / "rasa-venv-install.log"
        _run_logged(pip + ["-r", str(requirements), "-c", str(constraints)], log_path, "Installing Rasa")
        stamp.write_text(f"installed in {time.monotonic() - started:.0f}s\n")
        say.write(f"Rasa installed in {time.monotonic() - started:.0f}s.\n")
        for old in cache_dir().glob("rasa-venv-*"):
            if old.is_dir() and old != venv:
                shutil.rmtree(old, ignore_errors=True)
    return venv


def training_data_hash() -> str:
    return _digest([RASA_PROJECT / name for name in TRAINING_INPUTS])


def rasa_env(venv: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "RASA_TELEMETRY_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(RASA_PROJECT)]),
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "ACTION_ENDPOINT_URL": env.get("ACTION_ENDPOINT_URL", "http://127.0.0.1:5055/webhook"),
    })
    env.pop("PYTHONHOME", None)
    if env.get("LOG_LEVEL"):  # the gateway's LOG_LEVEL=info is Rasa's LOG_LEVEL too, which wants INFO
        env["LOG_LEVEL"] = env["LOG_LEVEL"].strip().upper()
    env.update(extra or {})
    return env


def ensure_model(venv: Path, force: bool = False, say: IO[str] = sys.stderr) -> Path:
    """A trained model for the current training data; trained only when the data changed."""
    digest = training_data_hash()
    models = cache_dir() / "models"
    models.mkdir(exist_ok=True)
    model = models / f"model-{digest}.tar.gz"
    if model.is_file() and not force:
        return model
    with _locked("train"):
        if model.is_file() and not force:
            return model
        say.write(f"Training the Rasa model (data hash {digest}); about 1-2 minutes...\n")
        say.flush()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=models) as out:
            _run_logged([str(venv / "bin" / "rasa"), "train", "--out", out, "--fixed-model-name", "model"],
                        cache_dir() / "rasa-train.log", "Training the Rasa model", cwd=RASA_PROJECT,
                        env=rasa_env(venv))
            trained = next(Path(out).glob("*.tar.gz"))
            os.replace(trained, model)
        say.write(f"Model trained in {time.monotonic() - started:.0f}s: {model}\n")
        for old in models.glob("model-*.tar.gz"):
            if old != model and old.stat().st_mtime < time.time() - 7 * 86400:
                old.unlink(missing_ok=True)
    return model


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


# How long Rasa keeps an idle conversation's tracker in Redis (the domain's session expiry
# starts a new session sooner; this is when the whole history goes). As long as a finished
# handoff is kept.
TRACKER_RETENTION_SECONDS = 30 * 24 * 3600
TRACKER_STORE = "sealed_store.SealedRedisTrackerStore"  # rasa_project/sealed_store.py
PROCESS_TRACKER_STORE = "process_store.ProcessTrackerStore"  # rasa_project/process_store.py
LOCK_LIFETIME_SECONDS = 15
RASA_KEY_PREFIX = "aftersales"  # Rasa's keys in Redis: "aftersales:tracker:<conversation key>", ...


def tracker_name(conversation_key: str, key_prefix: str = RASA_KEY_PREFIX) -> str:
    """The Redis key of a conversation's Rasa tracker (Rasa's RedisTrackerStore naming)."""
    return f"{key_prefix}:tracker:{conversation_key}"


def tracker_context(conversation_key: str) -> str:
    """What a sealed tracker is bound to (rasa_project/sealed_store.py)."""
    return f"rasa-tracker:{conversation_key}"


def rasa_endpoints(action_url: str, redis_url: str = "", key_prefix: str = RASA_KEY_PREFIX) -> dict[str, Any]:
    """Rasa's endpoints: the action server always; without `redis_url`, trackers in the Rasa
    process's memory that outlive a model swap; with `redis_url`, the tracker store (sealed)
    and the lock store in that Redis, so that a restarted Rasa server, or another one, carries
    on every conversation (slots, forms, pause) and one conversation's turns never run at once."""
    endpoints: dict[str, Any] = {"action_endpoint": {"url": action_url}}
    if not redis_url:
        # In memory, but kept across a model swap (`PUT /model`, `./aftersales train`).
        endpoints["tracker_store"] = {"type": PROCESS_TRACKER_STORE}
        return endpoints
    if not key_prefix.isalnum():
        raise RasaSetupError(f"the Rasa key prefix must be letters and digits, not {key_prefix!r}")
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise RasaSetupError(f"Rasa can use Redis only at a redis:// or rediss:// URL, not {parts.scheme}://")
    path = parts.path.strip("/")
    common: dict[str, Any] = {"type": "redis", "url": parts.hostname or "localhost", "port": parts.port or 6379,
                              "db": int(path) if path.isdigit() else 0, "key_prefix": key_prefix,
                              "use_ssl": parts.scheme == "rediss"}
    if parts.username:
        common["username"] = unquote(parts.username)
    if parts.password:
        common["password"] = unquote(parts.password)
    endpoints["tracker_store"] = {**common, "type": TRACKER_STORE, "record_exp": TRACKER_RETENTION_SECONDS}
    endpoints["lock_store"] = common
    return endpoints


@dataclass
class RasaProcesses:
    """The Rasa server and the action server as child processes of the gateway's CLI."""

    venv: Path
    model: Path
    rasa_port: int = 5005
    actions_port: int = 5055
    host: str = "127.0.0.1"
    auth_token: str = ""
    # The gateway's data keys (`DataKeys.export()`), so that the action server's flows seal
    # and open cases with the same keys (its cwd is rasa_project/, so a relative DATA_DIR
    # would name another key file). Empty: the action server inherits the environment's.
    data_keys: str = field(default="", repr=False)
    log_dir: Path = field(default_factory=lambda: cache_dir() / "logs")
    # With a Redis URL, Rasa keeps its trackers (sealed with `data_keys`) and locks there.
    redis_url: str = field(default="", repr=False)
    key_prefix: str = RASA_KEY_PREFIX
    actions: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[bytes] | None = None

    @property
    def rasa_url(self) -> str:
        return f"http://{self.host}:{self.rasa_port}"

    @property
    def action_url(self) -> str:
        return f"http://{self.host}:{self.actions_port}/webhook"

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of the Rasa server ("rasa") or the action server ("actions")."""
        extra = {"ACTION_ENDPOINT_URL": self.action_url}
        # The action server seals cases; the Rasa server seals its trackers when they are in Redis.
        if self.data_keys and (name == "actions" or self.redis_url):
            extra["DATA_KEYS"] = self.data_keys
        if self.redis_url and name == "rasa":
            # A server killed in the middle of a turn leaves its conversation's lock in Redis
            # until the lock's lifetime ends (Rasa's default: 60 s); the next turn, on another
            # server, waits that long. A turn takes well under a second.
            extra["TICKET_LOCK_LIFETIME"] = str(LOCK_LIFETIME_SECONDS)
        return rasa_env(self.venv, extra)

    def command_for(self, name: str) -> list[str]:
        """The command line of the Rasa server ("rasa") or the action server ("actions"), run
        in `RASA_PROJECT` with `env_for(name)` (the cluster command supervises them itself)."""
        rasa = str(self.venv / "bin" / "rasa")
        if name == "actions":
            return [rasa, "run", "actions", "--port", str(self.actions_port), "--actions", "actions"]
        if self.redis_url and not self.data_keys:
            raise RasaSetupError("Rasa's trackers in Redis are sealed: give RasaProcesses the data keys")
        args = [rasa, "run", "--enable-api", "--interface", self.host, "--port", str(self.rasa_port),
                "--model", str(self.model), "--endpoints", str(self.endpoints_file()),
                "--credentials", "credentials.yml"]
        if self.auth_token:
            # One argument: a token that starts with "-" (one in 64 of the generated ones)
            # would otherwise be read by Rasa's argparse as an option, and Rasa exits with 2.
            args.append(f"--auth-token={self.auth_token}")
        return args

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_dir / f"{name}-{self.rasa_port}.log", "ab")
        proc = subprocess.Popen(self.command_for(name), cwd=RASA_PROJECT, env=self.env_for(name),
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        return proc

    def start_actions(self) -> None:
        self.actions = self._spawn("actions")

    def endpoints_file(self) -> Path:
        """The endpoints this Rasa server starts with, written for it (it may hold a Redis
        password: readable by its owner only)."""
        path = self.log_dir / f"endpoints-{self.rasa_port}.yml"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_private(path, yaml.safe_dump(rasa_endpoints(self.action_url, self.redis_url, self.key_prefix), sort_keys=False))
        return path

    def start_server(self) -> None:
        self.server = self._spawn("rasa")

    def start(self) -> None:
        self.start_actions()
        self.start_server()

    def actions_ready(self) -> bool:
        return _http_ok(f"http://{self.host}:{self.actions_port}/health")

    def server_ready(self) -> bool:
        suffix = f"?token={self.auth_token}" if self.auth_token else ""
        return _http_ok(f"{self.rasa_url}/status{suffix}")

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in (("action server", self.actions), ("Rasa server", self.server)):
                if proc is not None and proc.poll() is not None:
                    raise RasaSetupError(f"the {name} exited with code {proc.returncode}; "
                                         f"see its log in {self.log_dir}")
            if self.actions_ready() and self.server_ready():
                return
            time.sleep(0.5)
        raise RasaSetupError(f"Rasa did not become ready within {timeout:.0f}s; logs in {self.log_dir}")

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_server(self) -> None:
        self._stop(self.server)

    def stop(self) -> None:
        self._stop(self.server)
        self._stop(self.actions)
