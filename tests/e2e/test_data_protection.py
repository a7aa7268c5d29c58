"""Data protection (hardening item 22): what the gateway and the flows keep at rest is
sealed (a raw read of the SQLite file, the Redis values and the files on disk finds none of
the shopper's words; a wrong key opens nothing; a value moved to another record does not
open); cases past their retention go; a shopper's data can be exported and erased with the
real CLI; rotating the key re-seals everything."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from bot.config import Settings, ensure_data_keys
from bot.sealing import DataKeys, Resealed, TamperedError, UnknownKeyError
from bot.transcript import RedisTranscriptJournal, TranscriptEntry
from channels.webchat import WEBCHAT_KEY
from flows.cases import CaseStore
from flows.updates import UpdatesLedger
from handoff.store import Handoff, LogEntry, RedisHandoffStore
from tests.conftest import ChatClient, RunningGateway, make_settings, start_gateway

REPO = Path(__file__).resolve().parents[2]
WORDS = "漏液 all over my sofa, call 13800138000"
NOTE = "shopper says the courier threw it"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")
MARK = b"shopper-private-pixels"
NO_RASA = "http://127.0.0.1:9"  # uploads and the purge need no Rasa


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.from_url(redis_url)
    yield client
    await client.aclose()


def raw_rows(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


def cli(*args: str, env: dict[str, str], stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, stdin=stdin)


async def upload(gateway: RunningGateway, token: str, data: bytes, name: str) -> dict[str, str]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="image/png")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway.url}/webchat/upload", data=form,
                                headers={"X-Webchat-Token": token}) as resp:
            assert resp.status == 200, await resp.text()
            stored: dict[str, str] = await resp.json()
            return stored


# -- cases (SQLite) --------------------------------------------------------------------------------


def test_case_details_and_notes_are_sealed_in_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "flows.sqlite3"
    keys = DataKeys.generate()
    store = CaseStore(path, keys)
    case = store.create_sync("complaint", [("open", NOTE)], customer_id="C77", conversation_id="webchat:c77",
                             details={"description": WORDS})
    store.set_status_sync(case.id, "in_progress", "the shopper sent 漏液 photos")
    other = store.create_sync("return", ["requested"], details={"reason": "size"})

    raw = b"".join(path.read_bytes() for path in tmp_path.glob("flows.sqlite3*"))  # the file and its WAL
    for secret in (WORDS, NOTE, "漏液", "13800138000"):
        assert secret.encode() not in raw
    (details,) = raw_rows(path, "SELECT details FROM cases WHERE id = ?", case.id)[0]
    assert str(details).startswith("sealed:v1:" + keys.current_kid)
    # The lookup columns stay in clear
    assert raw_rows(path, "SELECT customer_id, conversation_id, status FROM cases WHERE id = ?", case.id) == [
        ("C77", "webchat:c77", "in_progress")]

    again = CaseStore(path, keys).get_sync(case.id)
    assert again is not None and again.details["description"] == WORDS
    assert [h.note for h in again.history] == [NOTE, "the shopper sent 漏液 photos"]

    with pytest.raises(UnknownKeyError):
        CaseStore(path, DataKeys.generate()).get_sync(case.id)
    # A sealed value moved to another case does not open there
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE cases SET details = ? WHERE id = ?", (details, other.id))
    with pytest.raises(TamperedError):
        store.get_sync(other.id)


# -- Redis: transcripts and handoffs ---------------------------------------------------------------


async def test_transcripts_and_handoffs_are_sealed_in_redis(redis_client: redis_asyncio.Redis) -> None:
    keys, prefix = DataKeys.generate(), f"test:{uuid.uuid4().hex}:"
    journal = RedisTranscriptJournal(redis_client, keys, prefix=prefix + "transcript:")
    journal.start()
    journal.record("webchat:a", TranscriptEntry(role="shopper", text=WORDS, message_id="m1"))
    journal.record("webchat:b", TranscriptEntry(role="shopper", text="hello", message_id="m2"))
    await journal.close()
    handoffs = RedisHandoffStore(redis_client, keys, prefix=prefix + "handoff:")
    await handoffs.create(Handoff(key="webchat:a", channel="webchat", conversation_id="a", reason="complaint",
                                  language="zh", created_at=1.0, first_response_due=2.0, last_text=WORDS,
                                  detail={"summary": WORDS}))
    await handoffs.append_log("webchat:a", LogEntry(role="shopper", text=WORDS))
    assert await handoffs.claim("webchat:a", "alice") == (True, "alice")  # the Lua scripts still compare

    raw_values: list[bytes] = []
    async for name in redis_client.scan_iter(match=prefix + "*"):
        kind = await redis_client.type(name)
        if kind == b"list":
            raw_values += await redis_client.lrange(name, 0, -1)
        elif kind == b"hash":
            raw_values += (await redis_client.hgetall(name)).values()
    assert raw_values and not any(WORDS.encode() in v or "漏液".encode() in v for v in raw_values)

    kept = await journal.load()
    assert kept["webchat:a"][0].text == WORDS
    record = await handoffs.get("webchat:a")
    assert record is not None and (record.last_text, record.detail, record.status, record.agent) == (
        WORDS, {"summary": WORDS}, "assigned", "alice")
    assert [(e.role, e.text) for e in await handoffs.log("webchat:a")] == [("shopper", WORDS)]

    # Another key opens nothing (and says so in the log instead of failing the start)
    stranger = RedisTranscriptJournal(redis_client, DataKeys.generate(), prefix=prefix + "transcript:")
    assert await stranger.load() == {}
    # An entry moved to another conversation does not open there
    await redis_client.rpush(prefix + "transcript:webchat:b", (await redis_client.lrange(
        prefix + "transcript:webchat:a", 0, 0))[0])
    assert [e.text for e in await journal.read("webchat:b")] == ["hello"]


# -- uploads, through the running gateway ----------------------------------------------------------


async def test_uploads_are_sealed_on_disk_and_served_open(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, NO_RASA)
    gateway, runner = await start_gateway(settings)
    chat = await ChatClient.connect(gateway.ws_url)
    try:
        stored = await upload(gateway, chat.token or "", PNG + MARK, "broken-lotion-张伟.png")
        directory = settings.data_dir / "uploads"
        on_disk = (directory / stored["id"]).read_bytes()
        assert MARK not in on_disk and PNG not in on_disk and on_disk.startswith(b"SLD1")
        meta = (directory / f"{stored['id']}.json").read_text(encoding="utf-8")
        assert "broken-lotion" not in meta and "张伟" not in meta and "\\u5f20" not in meta
        async with aiohttp.ClientSession() as session, session.get(stored["url"]) as resp:
            assert resp.status == 200 and await resp.read() == PNG + MARK
            assert resp.headers["Content-Type"] == "image/png"
        # The quota still counts the sealed files, and expiry still deletes them
        uploads = gateway.app[WEBCHAT_KEY].uploads
        uploads._usage = None  # counted again from disk, as after a restart
        assert (await uploads._usage_of(chat.conversation_id or "")).files == 1
        assert await uploads.expire(now=time.time() + 31 * 86400) == 1
        assert not list(directory.iterdir())
    finally:
        await chat.close()
        await runner.cleanup()


# -- the keys --------------------------------------------------------------------------------------


def test_data_keys_are_validated_and_never_echoed(tmp_path: Path) -> None:
    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings({"DATA_KEYS": "c2hvcnQ"}, dotenv=None)
    assert "DATA_KEYS" in str(caught.value) and "c2hvcnQ" not in str(caught.value)
    keys = DataKeys.generate()
    settings = load_settings({"DATA_KEYS": keys.export()}, dotenv=None)
    assert keys.export() not in repr(settings) and keys.export() not in repr(keys)


def test_run_hands_the_gateways_data_keys_to_the_action_server(tmp_path: Path) -> None:
    from gateway.rasa_runtime import RasaProcesses

    keys = ensure_data_keys(make_settings(tmp_path, NO_RASA, data_keys=""))  # generated, as `run` does
    procs = RasaProcesses(venv=tmp_path / "venv", model=tmp_path / "model.tar.gz", data_keys=keys.export())
    assert procs.env_for("actions")["DATA_KEYS"] == keys.export()
    assert keys.export() not in repr(procs)


# -- retention -------------------------------------------------------------------------------------


async def test_the_gateway_deletes_cases_past_their_retention_but_not_demo_cases(tmp_path: Path) -> None:
    store = CaseStore(Path(os.environ["FLOWS_DB_PATH"]))
    now = time.time()
    old = store.create_sync("complaint", [("open", NOTE)], details={"description": WORDS},
                            conversation_id=f"webchat:{uuid.uuid4().hex}", turn_id="t1", at=now - 40 * 86400)
    recent = store.create_sync("return", ["requested"], at=now - 5 * 86400)
    demo = store.create_sync("exchange", ["requested"], at=now - 400 * 86400, demo=True)
    gateway, runner = await start_gateway(make_settings(tmp_path, NO_RASA, case_retention_days=30.0))
    try:
        async with asyncio.timeout(10):
            while await store.get(old.id) is not None:  # the purge runs at start, in the background
                await asyncio.sleep(0.1)
        assert await store.get(recent.id) is not None and await store.get(demo.id) is not None
        path = Path(os.environ["FLOWS_DB_PATH"])
        assert raw_rows(path, "SELECT COUNT(*) FROM case_history WHERE case_id = ?", old.id) == [(0,)]
        assert raw_rows(path, "SELECT COUNT(*) FROM case_turns WHERE case_id = ?", old.id) == [(0,)]
    finally:
        await runner.cleanup()
        store.erase_sync([recent.id, demo.id])


# -- the CLI: a shopper's export and erasure -------------------------------------------------------


async def upload_as_a_new_shopper(settings: Settings, data: bytes, name: str) -> tuple[dict[str, str], str]:
    """A gateway with `settings` is started, a web chat shopper uploads a file, it stops
    again: the stored file's answer and the conversation key."""
    gateway, runner = await start_gateway(settings)
    chat = await ChatClient.connect(gateway.ws_url)
    try:
        return await upload(gateway, chat.token or "", data, name), f"webchat:{chat.conversation_id}"
    finally:
        await chat.close()
        await runner.cleanup()


async def test_shopper_export_and_erase_with_the_cli(tmp_path: Path, redis_url: str,
                                                     redis_client: redis_asyncio.Redis) -> None:
    settings = make_settings(tmp_path, NO_RASA)
    db = tmp_path / "flows.sqlite3"
    env = {"DATA_DIR": str(settings.data_dir), "FLOWS_DB_PATH": str(db), "DATA_KEYS": settings.data_keys,
           "REDIS_URL": redis_url, "GATEWAY_SECRET": settings.secret}
    stored, key = await upload_as_a_new_shopper(settings, PNG + MARK, "receipt.png")
    customer = f"C-{uuid.uuid4().hex[:8]}"
    keys = DataKeys.parse(settings.data_keys)
    cases = CaseStore(db, keys)
    case = cases.create_sync("complaint", [("open", NOTE)], customer_id=customer, conversation_id=key,
                             details={"description": WORDS}, turn_id="m1")
    untouched = cases.create_sync("return", ["requested"], customer_id="someone-else", details={"x": "y"})
    journal = RedisTranscriptJournal(redis_client, keys)
    journal.start()
    journal.record(key, TranscriptEntry(role="shopper", text=WORDS, message_id="m1"))
    await journal.close()
    handoffs = RedisHandoffStore(redis_client, keys)
    await handoffs.create(Handoff(key=key, channel="webchat", conversation_id=key.partition(":")[2],
                                  reason="complaint", language="zh", created_at=time.time(),
                                  first_response_due=time.time() + 1800, last_text=WORDS))
    await handoffs.append_log(key, LogEntry(role="shopper", text=WORDS))
    choices = UpdatesLedger(db)  # they pressed "stop updates"; so did someone else
    choices.set_opted_out(key, True)
    choices.set_opted_out("telegram:777", True)

    out = tmp_path / "export"
    done = cli("shopper", "export", f"customer:{customer}", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert "Rasa's tracker" in done.stdout
    document = json.loads((out / "shopper.json").read_text(encoding="utf-8"))
    assert document["conversations"] == [key]
    (exported,) = document["cases"]
    assert exported["id"] == case.id and exported["details"]["description"] == WORDS
    assert exported["history"][0]["note"] == NOTE
    assert document["transcripts"][key][0]["text"] == WORDS
    assert document["handoffs"][key]["record"]["last_text"] == WORDS
    assert [(e["role"], e["text"]) for e in document["handoffs"][key]["log"]] == [("shopper", WORDS)]
    (file,) = document["uploads"]
    assert file["id"] == stored["id"] and file["name"] == "receipt.png"
    assert (out / file["file"]).read_bytes() == PNG + MARK
    assert (out / "shopper.json").stat().st_mode & 0o077 == 0
    assert list(document["case_updates_switched_off"]) == [key]

    # A bad reference is refused before anything is touched; erase wants a confirmation
    bad = cli("shopper", "erase", "webchat:../../etc", "--yes", env=env)
    assert bad.returncode == 2 and "conversation id" in bad.stderr
    assert cli("shopper", "export", "nobody", env=env).returncode == 2
    refused = cli("shopper", "erase", f"customer:{customer}", env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert cases.get_sync(case.id) is not None

    erased = cli("shopper", "erase", f"customer:{customer}", "--yes", env=env)
    assert erased.returncode == 0, erased.stderr
    assert case.id in erased.stdout and "1 uploaded file(s) deleted" in erased.stdout
    assert "Rasa's tracker" in erased.stdout
    assert cases.get_sync(case.id) is None and cases.get_sync(untouched.id) is not None
    for table, column in (("cases", "id"), ("case_history", "case_id"), ("case_turns", "case_id")):
        assert raw_rows(db, f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", case.id) == [(0,)]
    assert await redis_client.exists(f"gateway:transcript:{key}", f"gateway:handoff:rec:{key}",
                                      f"gateway:handoff:log:{key}") == 0
    assert await redis_client.zscore("gateway:handoff:active", key) is None
    assert not list((settings.data_dir / "uploads").glob(f"{stored['id']}*"))
    assert "choice to get no case updates deleted" in erased.stdout
    assert not choices.opted_out(key) and choices.opted_out("telegram:777")


def test_without_redis_the_cli_says_what_it_cannot_reach(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "FLOWS_DB_PATH": str(tmp_path / "flows.sqlite3"), "REDIS_URL": ""}
    done = cli("shopper", "erase", "telegram:-100123", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "REDIS_URL is not set" in done.stdout and "in its memory only" in done.stdout


# -- key rotation ----------------------------------------------------------------------------------


def test_cases_written_before_sealing_stay_readable_and_rekey_seals_them(tmp_path: Path) -> None:
    path = tmp_path / "flows.sqlite3"
    keys = DataKeys.generate()
    store = CaseStore(path, keys)
    with sqlite3.connect(path) as conn:  # a row as the previous release wrote it
        conn.execute("INSERT INTO cases VALUES ('TK-123456', 'complaint', 'open', NULL, 'C1', NULL, 'en', 1, 1, ?, 0)",
                     (json.dumps({"description": WORDS}, ensure_ascii=False),))
        conn.execute("INSERT INTO case_history VALUES ('TK-123456', 0, 'open', 1, ?)", (NOTE,))
    legacy = store.get_sync("TK-123456")
    assert legacy is not None and legacy.details["description"] == WORDS and legacy.history[0].note == NOTE
    assert store.reseal_sync() == Resealed(rewritten=2)
    assert raw_rows(path, "SELECT COUNT(*) FROM cases WHERE details LIKE '%漏液%'") == [(0,)]
    assert raw_rows(path, "SELECT note LIKE 'sealed:v1:%' FROM case_history WHERE case_id = 'TK-123456'") == [(1,)]
    assert store.reseal_sync() == Resealed()
    resealed = store.get_sync("TK-123456")
    assert resealed is not None and resealed.details == legacy.details and resealed.history == legacy.history


@pytest.fixture
async def own_redis(redis_url: str) -> AsyncIterator[tuple[str, redis_asyncio.Redis]]:
    """A Redis database of its own (the one after the shared test database), for `rekey`,
    which re-seals every gateway key it finds: nothing there may be sealed with another key."""
    base, _, number = redis_url.rpartition("/")
    url = f"{base}/{(int(number) - 1) % 16}"
    client = redis_asyncio.from_url(url)
    for pattern in ("gateway:transcript:*", "gateway:handoff:*", "gateway:inbox:*", "aftersales:tracker:*"):  # earlier runs
        async for name in client.scan_iter(match=pattern):
            await client.delete(name)
    yield url, client
    await client.aclose()


async def test_rotation_rekey_reseals_everything_then_the_old_key_can_go(
        tmp_path: Path, own_redis: tuple[str, redis_asyncio.Redis]) -> None:
    redis_url, redis_client = own_redis
    settings = make_settings(tmp_path, NO_RASA, data_keys="", redis_url="")
    db = tmp_path / "flows.sqlite3"
    old = ensure_data_keys(settings)  # the embedded default: generated into DATA_DIR/data-key
    key_file = settings.data_dir / "data-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert ensure_data_keys(settings) == old  # kept, not generated again
    env = {"DATA_DIR": str(settings.data_dir), "FLOWS_DB_PATH": str(db), "REDIS_URL": redis_url,
           "GATEWAY_SECRET": settings.secret, "DATA_KEYS": ""}
    stored, key = await upload_as_a_new_shopper(settings, PNG + MARK, "old-key.png")  # sealed with the old key
    case = CaseStore(db, old).create_sync("complaint", [("open", NOTE)], details={"description": WORDS},
                                          conversation_id=key)
    journal = RedisTranscriptJournal(redis_client, old)
    journal.start()
    journal.record(key, TranscriptEntry(role="shopper", text=WORDS))
    await journal.close()
    await RedisHandoffStore(redis_client, old).create(Handoff(
        key=key, channel="webchat", conversation_id=key.partition(":")[2], reason="complaint", language="en",
        created_at=time.time(), first_response_due=time.time() + 60, last_text=WORDS, detail={"d": WORDS}))
    await RedisHandoffStore(redis_client, old).append_log(key, LogEntry(role="shopper", text=WORDS))
    await redis_client.expire(f"gateway:transcript:{key}", 1000)

    # 1. a new key in front of the old one (what `data new-key` prints)
    new_key = cli("data", "new-key", env=env)
    assert new_key.returncode == 0, new_key.stderr
    ring = new_key.stdout.splitlines()[0].removeprefix("DATA_KEYS=")
    assert DataKeys.parse(ring).keys[1:] == old.keys
    new = DataKeys((DataKeys.parse(ring).keys[0],))
    # 2. rekey with both; 3. the old key is dropped and everything still opens with the new one
    rekey = cli("data", "rekey", env={**env, "DATA_KEYS": ring})
    assert rekey.returncode == 0, rekey.stderr
    assert "cases (values): 2 re-sealed" in rekey.stdout and "uploads (files): 1 re-sealed" in rekey.stdout
    assert "Redis transcripts (entries): 1 re-sealed" in rekey.stdout
    assert "Redis handoffs (values): 4 re-sealed" in rekey.stdout  # last_text, detail, refs, one log entry
    resealed = CaseStore(db, new).get_sync(case.id)
    assert resealed is not None and resealed.details["description"] == WORDS
    assert resealed.history[0].note == NOTE
    assert [e.text for e in await RedisTranscriptJournal(redis_client, new).read(key)] == [WORDS]
    assert 0 < await redis_client.ttl(f"gateway:transcript:{key}") <= 1000  # its expiry is kept
    handoff = await RedisHandoffStore(redis_client, new).get(key)
    assert handoff is not None and (handoff.last_text, handoff.detail) == (WORDS, {"d": WORDS})
    assert [e.text for e in await RedisHandoffStore(redis_client, new).log(key)] == [WORDS]
    uploads = tmp_path / "data" / "uploads"
    assert new.open_bytes((uploads / stored["id"]).read_bytes(), f"upload:{stored['id']}") == PNG + MARK
    with pytest.raises(UnknownKeyError):
        old.open_bytes((uploads / stored["id"]).read_bytes(), f"upload:{stored['id']}")
    # The gateway started with only the new key serves the file
    gateway, runner = await start_gateway(make_settings(tmp_path, NO_RASA, data_keys=new.export()))
    try:
        async with aiohttp.ClientSession() as session, session.get(
                stored["url"].replace(f":{settings.port}", f":{gateway.settings.port}")) as resp:
            assert resp.status == 200 and await resp.read() == PNG + MARK
    finally:
        await runner.cleanup()
        await RedisHandoffStore(redis_client, new).erase(key)
        await redis_client.delete(f"gateway:transcript:{key}")
