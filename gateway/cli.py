"""Command line of the gateway (`./aftersales <command>` runs it inside the gateway's venv).

  run           set up Rasa if needed, start the action server, the Rasa server and the gateway
  gateway       start only the gateway (Rasa runs elsewhere: RASA_URL)
  cluster       the production topology on this machine: Redis (AOF), Rasa servers, an action
                server, gateways and HAProxy in front (--gateways N --rasa N --port P --dir D)
  setup         install the Rasa venv and train the model when needed, then exit
  train         retrain the Rasa model when the data changed (--force: even if not); on a running
                stack, score it against the running model and swap it in if no worse
                ([--model M] [--url U] [--no-swap] [--swap-anyway])
  check-config  validate the environment and print the effective settings
  settings      print every setting as the README's tables (--write: update README.md)
  chat          talk to the running stack from the terminal, as the web chat page does
                ([--lang zh] [--order AS10001] [--url http://127.0.0.1:8080])
  save-test     turn a real conversation into an evaluation test (REF --outcome X [--handoff])
  agent         manage console agents (add USER "Name" [--role manager] | remove USER | list)
  shopper       a shopper's access and deletion requests (export REF [--out DIR] | erase REF [--yes])
  data          the keys that seal the data at rest (rekey: re-seal with the newest | new-key)
  whatif        what an edited policies.yml would have decided differently (FILE [--days 30])
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import secrets
import signal
import sys
import time
from typing import Sequence

from bot.config import ConfigError, Settings, ensure_data_keys, load_settings
from bot.log import setup_logging
from bot.sealing import SealingError
from gateway.rasa_runtime import RasaProcesses, RasaSetupError, ensure_model, ensure_rasa_venv

log = logging.getLogger("gateway.cli")
RASA_TOKEN_FILE = "rasa-token"  # `run` writes the token it made for its Rasa server here


def _say(text: str) -> None:
    print(text, flush=True)


async def _serve(settings: Settings, rasa: RasaProcesses | None) -> None:
    from bot.serving import serve
    from gateway.app import (
        NOTICES_KEY,
        create_app,  # imported here so `setup` does not load aiohttp apps
        drain,
    )

    app = create_app(settings)
    try:
        runner = await serve(app, settings.host, settings.port)
    except OSError as exc:
        raise RasaSetupError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; "
                             "set GATEWAY_PORT to a free port") from exc
    base = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
    _say(f"Gateway listening on {base}")
    _say(f"  web chat page:      {base}/")
    _say(f"  agent console:      {base}/console")
    _say(f"  REST (Rasa format): {base}/webhooks/rest/webhook")
    _say(f"  health / metrics:   {base}/healthz  {base}/metrics")
    for line in app[NOTICES_KEY]:  # from the plugins: which channels are on, a new demo agent
        _say(line.replace("{base}", base))
    # What start-up built (modules, policies, texts, the apps) lives as long as the process:
    # moved out of the collector's sight, so that its full collections, which a busy gateway
    # triggers every few hundred turns, no longer walk it (about a fifth of a turn's CPU).
    gc.collect()
    gc.freeze()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def watch_rasa() -> None:
        if rasa is None:
            return
        try:
            await asyncio.to_thread(rasa.wait_ready, 300)
            _say(f"Rasa is ready at {rasa.rasa_url}; the assistant is answering. Ctrl-C stops everything.")
        except RasaSetupError as exc:
            _say(f"error: {exc}")
            stop.set()

    watcher = asyncio.create_task(watch_rasa())
    try:
        await stop.wait()
        _say(f"Stopping: answering the messages already accepted (up to {settings.drain_seconds:g} s)...")
        left = await drain(app, settings.drain_seconds)
        if left:
            _say(f"{left} message(s) not answered in time; those kept are answered after the restart")
    finally:
        watcher.cancel()
        await runner.cleanup()


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    setup_logging(settings.log_level, settings.log_format)
    if "," in settings.rasa_url:
        raise RasaSetupError("`run` starts one Rasa server, but RASA_URL names several; give one, or start "
                             "the Rasa servers yourself and the gateway with `./aftersales gateway`")
    venv = ensure_rasa_venv()
    model = ensure_model(venv)
    from urllib.parse import urlsplit

    rasa_port = urlsplit(settings.rasa_url).port or 5005
    if not settings.rasa_token:
        # Rasa's HTTP API reads every tracker and replaces models: never open. A token for
        # this run, shared by the Rasa server we start and the gateway (both on loopback).
        settings = dataclasses.replace(settings, rasa_token=secrets.token_urlsafe(32))
        from bot.files import write_private

        # For the designer's tools on this machine (./aftersales save-test), readable by its owner only.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        write_private(settings.data_dir / RASA_TOKEN_FILE, settings.rasa_token + "\n")
    keys = ensure_data_keys(settings)  # generated into DATA_DIR/data-key on first start
    settings = dataclasses.replace(settings, data_keys=keys.export())
    rasa = RasaProcesses(venv=venv, model=model, rasa_port=rasa_port, actions_port=args.actions_port,
                         auth_token=settings.rasa_token, data_keys=keys.export(), redis_url=settings.redis_url)
    _say(f"Starting the Rasa action server (:{args.actions_port}) and Rasa server (:{rasa_port}); "
         "the gateway answers with a holding message until Rasa is ready (about 20-40 s).")
    rasa.start()
    try:
        asyncio.run(_serve(settings, rasa))
    finally:
        rasa.stop()
        _say("Stopped.")
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    setup_logging(settings.log_level, settings.log_format)
    asyncio.run(_serve(settings, None))
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.cluster import run_cluster

    setup_logging("INFO", "text")
    venv = ensure_rasa_venv()
    return run_cluster(args.gateways, args.rasa, args.port, Path(args.dir), venv, ensure_model(venv), _say)


def cmd_chat(args: argparse.Namespace) -> int:
    """The web chat in a terminal (gateway/chat.py), against the gateway at --url."""
    from gateway.chat import main as chat_main

    return chat_main(args.url, args.lang, args.order)


def cmd_save_test(args: argparse.Namespace) -> int:
    """A real conversation as an evaluation dialogue with the outcome marked right (gateway/saved_tests.py)."""
    from pathlib import Path

    from bot.messages import ConversationRef
    from bot.rasa_client import RasaClient, RasaError
    from gateway import saved_tests
    from gateway.rasa_runtime import REPO_ROOT

    settings = _settings_or_exit()
    if ConversationRef.parse(args.ref) is None:
        print(f"error: {args.ref!r} is not a conversation (webchat:<id>, telegram:<chat>, rest:<sender>, ...)",
              file=sys.stderr)
        return 2
    token = _rasa_token(settings)

    async def tracker() -> dict[str, object]:
        client = RasaClient(settings.rasa_url, settings.rasa_timeout_seconds, token)
        await client.start()
        try:
            return await client.tracker(args.ref)
        finally:
            await client.close()

    try:
        found = asyncio.run(tracker())
        saved = saved_tests.build(found, args.outcome, args.handoff, args.name or f"saved-{secrets.token_hex(4)}",
                                  args.note or "")
    except RasaError as exc:
        print(f"error: Rasa at {settings.rasa_url} cannot be read ({exc}); is the stack running?", file=sys.stderr)
        return 1
    except saved_tests.SaveTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tests_dir = Path(settings.saved_tests_dir) if settings.saved_tests_dir else REPO_ROOT / "tests/evaluation/corpus_saved"
    for path in saved_tests.write(saved, tests_dir, tests_dir / "stories"):
        _say(f"wrote {path}")
    _say(f"Saved as test {saved.dialogue['id']} ({saved.language}): ./aftersales test replays it.")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    venv = ensure_rasa_venv()
    model = ensure_model(venv)
    _say(f"Rasa venv: {venv}\nModel:     {model}")
    return 0


def _rasa_token(settings: Settings) -> str:
    """RASA_TOKEN, or the one `run` made for the Rasa server it started."""
    token_file = settings.data_dir / RASA_TOKEN_FILE
    return settings.rasa_token or (token_file.read_text().strip() if token_file.exists() else "")


def cmd_train(args: argparse.Namespace) -> int:
    """Train when the data changed; on a running stack, swap the model in if it scores no worse."""
    from pathlib import Path

    from gateway.model_swap import SwapError, running_servers, swap_if_no_worse

    venv = ensure_rasa_venv()
    if args.model:
        model = Path(args.model).resolve()
        if not model.is_file():
            print(f"error: no model at {model}", file=sys.stderr)
            return 2
    else:
        model = ensure_model(venv, force=args.force)
    _say(f"Model: {model}")
    if args.no_swap:
        return 0
    settings = _settings_or_exit()
    urls = [u.strip() for u in (args.url or settings.rasa_url).split(",") if u.strip()]
    servers = running_servers(urls, _rasa_token(settings))
    if not servers:
        _say(f"No Rasa server answers at {', '.join(urls)}: the next start serves this model.")
        return 0
    try:
        return 0 if swap_if_no_worse(venv, model, servers, _say, force=args.swap_anyway) else 1
    except SwapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_agent(args: argparse.Namespace) -> int:
    """Manage the agents who may sign in to the console (AGENTS_FILE, default DATA_DIR/agents.yml)."""
    import getpass
    import secrets

    from handoff.agents import Agent, hash_password, load_agents, save_agents
    from handoff.config import load_handoff_settings

    settings = _settings_or_exit()
    path = load_handoff_settings(settings.environ, settings.data_dir).agents_file
    agents = load_agents(path) if path.exists() else {}
    if args.action == "list":
        for agent in agents.values():
            _say(f"{agent.username:20} {agent.role:8} {agent.name}")
        return 0
    if not args.username:
        print("error: give a username", file=sys.stderr)
        return 2
    if args.action == "remove":
        if agents.pop(args.username, None) is None:
            print(f"error: no agent {args.username!r} in {path}", file=sys.stderr)
            return 1
        save_agents(path, agents)
        _say(f"Removed {args.username} from {path}")
        return 0
    password = args.password
    generated = False
    if not password and sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.username}: ")
    if not password:
        password, generated = secrets.token_urlsafe(9), True
    earlier = agents.get(args.username)
    role = args.role or (earlier.role if earlier is not None else "agent")  # a new password keeps the role
    agents[args.username] = Agent(args.username, args.name or args.username, hash_password(password), role)
    save_agents(path, agents)
    _say(f"Agent {args.username} ({role}) saved in {path}" + (f" with password {password}" if generated else ""))
    return 0


def cmd_shopper(args: argparse.Namespace) -> int:
    """Export or erase what the gateway and the flows keep of one shopper (gateway/privacy.py)."""
    from pathlib import Path

    from gateway.privacy import NO_REDIS, NOT_REACHED, RefError, Stores, parse_ref

    try:
        ref = parse_ref(args.ref)
    except RefError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = _settings_or_exit()
    stores = Stores(settings, ensure_data_keys(settings))

    async def run() -> int:
        async with stores:
            data = await stores.collect(ref)
            _say(f"{ref}: {len(data.cases)} case(s), {len(data.conversations)} conversation(s) "
                 f"({', '.join(data.conversations) or 'none known'}), {len(data.uploads)} upload(s)"
                 + (f", {len(data.transcripts)} transcript(s), {len(data.handoffs)} handoff(s) and "
                    f"{len(data.rasa_trackers)} Rasa's tracker(s) in Redis"
                    if stores.redis is not None else ""))
            if args.action == "export":
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(ref))
                out = Path(args.out) if args.out else Path(f"export-{safe}-{time.strftime('%Y%m%d-%H%M%S')}")
                try:
                    written = await stores.export(data, out)
                except FileExistsError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 1
                _say(f"Exported to {out}/ ({len(written)} file(s): shopper.json and the uploads, opened)")
            else:
                if not args.yes:
                    if not sys.stdin.isatty():
                        print("error: erasing cannot be undone; add --yes to confirm", file=sys.stderr)
                        return 2
                    question = f"Delete everything listed above for {ref}? Type 'erase' to confirm: "
                    answer = await asyncio.to_thread(input, question)
                    if answer.strip() != "erase":
                        _say("Nothing deleted.")
                        return 1
                for line in await stores.erase(data):
                    _say(f"  {line}")
            if stores.redis is None:
                _say(NO_REDIS)
            _say(NOT_REACHED)
            return 0

    return asyncio.run(run())


def cmd_data(args: argparse.Namespace) -> int:
    """`rekey`: re-seal everything kept at rest with the newest key. `new-key`: the DATA_KEYS
    value for a rotation (a fresh key in front of the ones in use)."""
    from bot.sealing import Resealed
    from gateway.privacy import Stores

    settings = _settings_or_exit()
    setup_logging(settings.log_level, settings.log_format)
    keys = ensure_data_keys(settings)
    if args.action == "new-key":
        _say(f"DATA_KEYS={keys.with_new_key().export()}")
        _say("Set it for the gateway (and the action server, if it runs apart), restart, run "
             "`./aftersales data rekey`, then drop the old key(s) from the end.")
        return 0
    stores = Stores(settings, keys)

    async def run() -> list[tuple[str, Resealed]]:
        async with stores:
            return await stores.reseal()

    _say(f"Re-sealing with data key {keys.current_kid} (ring: {', '.join(keys.kids)})")
    results = asyncio.run(run())
    for what, done in results:
        _say(f"  {what}: {done}")
    if not settings.redis_url:
        _say("  Redis: REDIS_URL is not set, nothing kept there")
    if any(done.unreadable for _, done in results):
        print("error: some values open with none of the keys in DATA_KEYS (listed in the log); "
              "they were left as they are: keep the old key until they are found", file=sys.stderr)
        return 1
    _say("Everything opens with the newest key: the older keys can now be removed from DATA_KEYS.")
    return 0


def cmd_whatif(args: argparse.Namespace) -> int:
    """The recent cases decided again under an edited policies.yml, and what would change (flows/whatif.py)."""
    from pathlib import Path

    from flows.cases import CaseStore
    from flows.whatif import main as whatif_main

    store = CaseStore(keys=ensure_data_keys(_settings_or_exit()))
    return whatif_main(Path(args.rules), args.days, say=_say, store=store)


def cmd_settings(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.settings_doc import render_into, tables

    if args.write:
        readme = Path(__file__).resolve().parent.parent / "README.md"
        readme.write_text(render_into(readme.read_text(encoding="utf-8")), encoding="utf-8")
        _say(f"Settings tables written into {readme}")
        return 0
    for part, table in tables().items():
        _say(f"## {part}\n\n{table}\n")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        shown = "(set)" if f.name in ("secret", "rasa_token", "rest_auth_token", "data_keys") and value else value
        _say(f"{f.name:32} {shown}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aftersales", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start Rasa, its action server and the gateway")
    run.add_argument("--actions-port", type=int, default=5055)
    run.set_defaults(func=cmd_run)
    sub.add_parser("gateway", help="start only the gateway").set_defaults(func=cmd_gateway)
    cluster = sub.add_parser("cluster", help="Redis, Rasa servers, actions, gateways and HAProxy on this machine")
    cluster.add_argument("--gateways", type=int, default=2)
    cluster.add_argument("--rasa", type=int, default=2)
    cluster.add_argument("--port", type=int, default=8080, help="where HAProxy listens (default 8080)")
    cluster.add_argument("--dir", default="var/cluster", help="Redis's AOF, the shared data, logs (default var/cluster)")
    cluster.set_defaults(func=cmd_cluster)
    chat = sub.add_parser("chat", help="talk to the running stack from the terminal (the web chat's protocol)")
    chat.add_argument("--lang", choices=["en", "zh"], default="en", help="the page's language: en, or zh (zh-CN)")
    chat.add_argument("--order", help="start the conversation about this order, e.g. AS10001")
    chat.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway (default http://127.0.0.1:8080)")
    chat.set_defaults(func=cmd_chat)
    save = sub.add_parser("save-test", help="turn a real conversation into an evaluation test: REF --outcome X")
    save.add_argument("ref", help="the conversation, as the console shows it (webchat:<id>, telegram:<chat>, ...)")
    save.add_argument("--outcome", required=True, help="what the bot should have settled: refund, refused, "
                      "exchange, swap, replacement, compensation, complaint, progress, faq, handoff, ...")
    save.add_argument("--handoff", action="store_true", help="a person should have been asked in")
    save.add_argument("--name", help="the test's id (lower-case letters, digits, '-')")
    save.add_argument("--note", help="what went wrong, kept with the test")
    save.set_defaults(func=cmd_save_test)
    sub.add_parser("setup", help="install Rasa and train the model if needed").set_defaults(func=cmd_setup)
    train = sub.add_parser("train", help="train the Rasa model")
    train.add_argument("--force", action="store_true", help="train even if the training data did not change")
    train.add_argument("--model", help="swap in this already trained model instead of training")
    train.add_argument("--url", help="the running Rasa servers, comma-separated (default: RASA_URL)")
    train.add_argument("--no-swap", action="store_true", help="only train; leave running servers alone")
    train.add_argument("--swap-anyway", action="store_true",
                       help="swap even if the new model scores worse than the running one")
    train.set_defaults(func=cmd_train)
    sub.add_parser("check-config", help="validate settings").set_defaults(func=cmd_check_config)
    settings = sub.add_parser("settings", help="print every setting as the README's tables")
    settings.add_argument("--write", action="store_true", help="update the tables in README.md")
    settings.set_defaults(func=cmd_settings)
    agent = sub.add_parser("agent", help="manage console agents: add USER [NAME] | remove USER | list")
    agent.add_argument("action", choices=["add", "remove", "list"])
    agent.add_argument("username", nargs="?")
    agent.add_argument("name", nargs="?")
    agent.add_argument("--password", help="otherwise asked for (or generated and printed)")
    agent.add_argument("--role", choices=["agent", "manager"],
                       help="manager: may also open the analytics (default: agent, or the role it had)")
    agent.set_defaults(func=cmd_agent)
    shopper = sub.add_parser("shopper", help="a shopper's data: export REF [--out DIR] | erase REF [--yes]; "
                                             "REF is webchat:<id>, telegram:<chat>, slack:<...>, rest:<sender> "
                                             "or customer:<id>")
    shopper.add_argument("action", choices=["export", "erase"])
    shopper.add_argument("ref")
    shopper.add_argument("--out", help="export: the directory to write (default ./export-<ref>-<time>)")
    shopper.add_argument("--yes", action="store_true", help="erase: do not ask")
    shopper.set_defaults(func=cmd_shopper)
    data = sub.add_parser("data", help="data keys: rekey (re-seal with the newest key) | new-key")
    data.add_argument("action", choices=["rekey", "new-key"])
    data.set_defaults(func=cmd_data)
    whatif = sub.add_parser("whatif", help="what an edited policies.yml would change: FILE [--days 30]")
    whatif.add_argument("rules", help="the edited policies file, e.g. flows/policies.yml.new")
    whatif.add_argument("--days", type=int, default=30, help="replay the cases of the last N days (default 30)")
    whatif.set_defaults(func=cmd_whatif)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RasaSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # an optional channel's settings, validated when the app is built
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SealingError as exc:  # a data key missing from DATA_KEYS, an unreadable key file
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
