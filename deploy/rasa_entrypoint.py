"""Entry point of the Rasa image (deploy/Dockerfile.rasa). One image runs both engine processes:

  server       the Rasa server on :5005 (HTTP API on, behind --auth-token=$RASA_TOKEN)
  actions      the action server on :5055 (the flows)
  healthcheck  the image's HEALTHCHECK: the Rasa server's /status (a model is loaded) or the
               action server's /health, whichever this container runs
  anything else is run as given, in rasa_project/ with the same environment
               (e.g. `rasa --version`, `rasa data validate`)

The command lines, the environment and the endpoints file are those gateway/rasa_runtime.py
gives the processes `./aftersales run` and `./aftersales cluster` start (`RasaProcesses`):
`rasa_env()` makes the environment, and `rasa_endpoints()` makes the endpoints from REDIS_URL
at every start, so that the trackers (sealed with DATA_KEYS, rasa_project/sealed_store.py)
and the locks are in the gateways' Redis under the same key prefix, and the Redis password
is written only to a file of this container (0600), never into the image.

Environment (deploy/compose.yaml sets it):
  REDIS_URL            server: redis://[user:password@]host:port/db, the gateways' REDIS_URL
  DATA_KEYS            server and actions: the gateways' DATA_KEYS (trackers and cases are sealed)
  RASA_TOKEN           server: its --auth-token, the gateways' RASA_TOKEN
  ACTION_ENDPOINT_URL  server: the action server's webhook, e.g. http://actions:5055/webhook
  FLOWS_DB_PATH        actions: the flows' SQLite file, on the volume the gateways mount too

Runs in the image's Rasa venv (Python 3.10), with PYTHONPATH=/app:/app/rasa_project.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, NoReturn

VENV = Path("/opt/rasa-venv")  # the image's Rasa venv (what ensure_rasa_venv() installs)
MODEL = Path("/app/models/model.tar.gz")  # trained when the image was built
RUN_DIR = Path("/tmp/aftersales")  # this container's own files
ENDPOINTS_FILE = RUN_DIR / "endpoints.yml"
ROLE_FILE = RUN_DIR / "role"
RASA_PORT = 5005  # RasaProcesses' defaults (rasa_port, actions_port)
ACTIONS_PORT = 5055
INTERFACE = "0.0.0.0"  # RasaProcesses.host is loopback; in a container the others reach it over the network


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def healthcheck() -> int:
    role = ROLE_FILE.read_text(encoding="utf-8").strip() if ROLE_FILE.is_file() else ""
    if role == "server":  # as RasaProcesses.server_ready(): 200 once a model is loaded
        token = os.environ.get("RASA_TOKEN", "")
        suffix = "?" + urllib.parse.urlencode({"token": token}) if token else ""
        url = f"http://127.0.0.1:{RASA_PORT}/status{suffix}"
    elif role == "actions":  # as RasaProcesses.actions_ready()
        url = f"http://127.0.0.1:{ACTIONS_PORT}/health"
    else:
        return 1  # not started yet, or a one-off command
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:  # noqa: S310 (loopback)
            return 0 if 200 <= int(resp.status) < 300 else 1
    except Exception:
        return 1


def check_data_keys(value: str, needed_for: str) -> None:
    from bot.sealing import DataKeyError, DataKeys

    if not value:
        fail(f"DATA_KEYS is not set: {needed_for}; give the gateways, the Rasa servers and the action "
             "server the same DATA_KEYS")
    try:
        DataKeys.parse(value)
    except DataKeyError as exc:
        fail(str(exc))


def server(env_in: Dict[str, str]) -> tuple[List[str], Dict[str, str]]:
    """RasaProcesses.command_for("rasa") and env_for("rasa"), with the endpoints_file() it writes."""
    import yaml

    from bot.files import write_private
    from gateway.rasa_runtime import LOCK_LIFETIME_SECONDS, RasaSetupError, rasa_endpoints, rasa_env

    token = env_in.get("RASA_TOKEN", "")
    if not token:
        fail("RASA_TOKEN is not set: Rasa's HTTP API (every tracker, model replacement) is never left open; "
             "give the Rasa servers and the gateways the same RASA_TOKEN")
    redis_url = env_in.get("REDIS_URL", "").strip()
    extra: Dict[str, str] = {}
    if redis_url:
        check_data_keys(env_in.get("DATA_KEYS", "").strip(), "Rasa's trackers in Redis are sealed with it")
        # A server killed in the middle of a turn leaves that conversation's lock until it expires.
        extra["TICKET_LOCK_LIFETIME"] = str(LOCK_LIFETIME_SECONDS)
    else:
        print("warning: REDIS_URL is not set: this Rasa server keeps its trackers in memory (lost when it "
              "stops, not shared with another Rasa server)", file=sys.stderr, flush=True)
    env = rasa_env(VENV, extra)
    try:
        endpoints = rasa_endpoints(env["ACTION_ENDPOINT_URL"], redis_url)
    except RasaSetupError as exc:
        fail(f"REDIS_URL: {exc}")
    write_private(ENDPOINTS_FILE, yaml.safe_dump(endpoints, sort_keys=False))
    command = [str(VENV / "bin" / "rasa"), "run", "--enable-api", "--interface", INTERFACE,
               "--port", str(RASA_PORT), "--model", str(MODEL), "--endpoints", str(ENDPOINTS_FILE),
               "--credentials", "credentials.yml",
               # One argument: a token starting with "-" would otherwise be read as an option.
               f"--auth-token={token}"]
    return command, env


def actions(env_in: Dict[str, str]) -> tuple[List[str], Dict[str, str]]:
    """RasaProcesses.command_for("actions") and env_for("actions")."""
    from gateway.rasa_runtime import rasa_env

    check_data_keys(env_in.get("DATA_KEYS", "").strip(), "the action server seals the cases the gateways open")
    command = [str(VENV / "bin" / "rasa"), "run", "actions", "--port", str(ACTIONS_PORT), "--actions", "actions"]
    return command, rasa_env(VENV)


def main(argv: List[str]) -> int:
    role = argv[0] if argv else "server"
    if role == "healthcheck":
        return healthcheck()
    from gateway.rasa_runtime import RASA_PROJECT, rasa_env

    if role == "server":
        command, env = server(dict(os.environ))
    elif role == "actions":
        command, env = actions(dict(os.environ))
    else:
        command, env = argv, rasa_env(VENV)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    ROLE_FILE.write_text(role if role in ("server", "actions") else "command", encoding="utf-8")
    os.chdir(RASA_PROJECT)  # RasaProcesses runs both in rasa_project/ (credentials.yml, the actions package)
    sys.stdout.flush()
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
