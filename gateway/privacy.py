"""A shopper's access and deletion requests, and re-sealing with a new data key: the work
behind `./aftersales shopper export|erase <ref>` and `./aftersales data rekey`.

A reference names a conversation as the console shows it (`webchat:<id>`, `rest:<sender>`,
`socketio:<id>`, `telegram:<chat id>`, `slack:<channel>[:<thread>]`) or a signed-in
customer (`customer:<id>`, the id in the shop's customer token); a customer covers their
cases and every conversation those cases were made in.

What is reached: the flows' cases (SQLite), a conversation's choice to get no case updates
(same file), the web chat uploads (`DATA_DIR/uploads`), the
analytics' records of the conversation (counts under a keyed hash: renamed at random on erasure,
so the shop's figures stay) and,
with `REDIS_URL`, the kept transcript, the handoff record and log, the replies kept for a REST or
socket.io client, and Rasa's tracker (Rasa
keeps it in the same Redis then, sealed). Not reached, and said so in the output: a running
gateway's in-memory copy of a transcript; without Redis, Rasa's tracker too (in the Rasa
server's memory). Both go when those processes restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import WatchError

from bot.config import Settings, ensure_secret
from bot.messages import ConversationRef
from bot.outbox import RedisOutbox
from bot.resealing import as_text
from bot.sealing import DataKeys, Resealed, SealingError
from gateway.rasa_runtime import tracker_context, tracker_name

CHANNELS = ("webchat", "rest", "socketio", "telegram", "slack")
OUTBOX_CHANNELS = ("rest", "socketio")  # replies kept in Redis for a client's next request or session
_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_.@+:\-]{1,200}$")
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_.@+\-]{1,128}$")
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
               "application/pdf": ".pdf"}

NOT_REACHED = (
    "Not reached from here: the running gateway's in-memory copy of their history (it goes "
    "when the gateway restarts).")
NO_REDIS = (
    "REDIS_URL is not set: the gateway kept these conversations' history and handoffs in its "
    "memory only, and the Rasa server its trackers in its own, which this command cannot reach; "
    "they go when those processes restart (`./aftersales run` restarts Rasa on every start).")


class RefError(ValueError):
    """A shopper reference the commands do not understand; the message shows the forms."""


@dataclass(frozen=True)
class ShopperRef:
    customer_id: str | None = None
    conversation: str | None = None  # a conversation key, "<channel>:<id>"

    def __str__(self) -> str:
        return f"customer:{self.customer_id}" if self.customer_id else str(self.conversation)


def parse_ref(text: str) -> ShopperRef:
    channel, sep, rest = text.strip().partition(":")
    forms = f"customer:<id> or <channel>:<conversation id> with channel one of {', '.join(CHANNELS)}"
    if not sep or not rest:
        raise RefError(f"{text!r} is not a shopper reference; give {forms}")
    if channel == "customer":
        if not _CUSTOMER_ID.match(rest):
            raise RefError(f"{text!r}: a customer id is 1-128 letters, digits or _ . @ + -")
        return ShopperRef(customer_id=rest)
    if channel not in CHANNELS:
        raise RefError(f"{text!r}: unknown channel {channel!r}; give {forms}")
    if not _CONVERSATION_ID.match(rest) or ".." in rest or rest.startswith("."):
        raise RefError(f"{text!r}: a conversation id is 1-200 letters, digits or _ . @ + : - (no '..')")
    return ShopperRef(conversation=ConversationRef(channel, rest).key)


@dataclass
class ShopperData:
    """Everything the stores keep of one shopper, opened."""

    ref: ShopperRef
    conversations: list[str] = field(default_factory=list)
    cases: list[Any] = field(default_factory=list)  # flows.cases.Case
    transcripts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    handoffs: dict[str, dict[str, Any]] = field(default_factory=dict)
    rasa_trackers: dict[str, Any] = field(default_factory=dict)  # conversation key -> Rasa's tracker (opened)
    uploads: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)  # (conversation, id, meta)
    updates_off: dict[str, str] = field(default_factory=dict)  # conversation key -> when case updates were switched off
    redis: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "reference": str(self.ref),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "conversations": self.conversations,
            "cases": [dataclasses.asdict(c) for c in self.cases],
            "transcripts": self.transcripts if self.redis else None,
            "handoffs": self.handoffs if self.redis else None,
            "rasa_trackers": self.rasa_trackers if self.redis else None,
            "uploads": [{"conversation": conv, "id": file_id, "name": meta.get("name"), "kind": meta.get("kind"),
                         "mime_type": meta.get("mime_type"), "size": meta.get("size"),
                         "file": f"uploads/{file_id}{_EXTENSIONS.get(str(meta.get('mime_type')), '')}"}
                        for conv, file_id, meta in self.uploads],
            "case_updates_switched_off": self.updates_off,
            "not_included": NOT_REACHED if self.redis else f"{NO_REDIS} {NOT_REACHED}",
        }


class Stores:
    """The stores the gateway and the flows keep a shopper's data in, opened with `keys`."""

    def __init__(self, settings: Settings, keys: DataKeys) -> None:
        from channels.webchat.session import SessionSigner
        from channels.webchat.uploads import Uploads
        from flows.cases import CaseStore
        from flows.ownership import ProofLedger
        from flows.updates import UpdatesLedger

        self.settings = settings
        self.keys = keys
        self.cases = CaseStore(keys=keys)
        self.proof_failures = ProofLedger(self.cases.path)
        self.update_choices = UpdatesLedger(self.cases.path)  # who switched case updates off
        secret = ensure_secret(settings)
        self.uploads = Uploads(settings.data_dir / "uploads", SessionSigner(secret), secret, keys=keys)
        self.redis: Any = None

    async def __aenter__(self) -> "Stores":
        if self.settings.redis_url:
            import redis.asyncio as redis_asyncio

            self.redis = redis_asyncio.from_url(self.settings.redis_url)  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    def journal(self) -> Any:
        from bot.transcript import RedisTranscriptJournal

        return RedisTranscriptJournal(self.redis, self.keys)

    def handoffs(self) -> Any:
        from handoff.store import RedisHandoffStore

        return RedisHandoffStore(self.redis, self.keys)

    async def rasa_tracker(self, key: str) -> Any:
        """The conversation's Rasa tracker as Rasa keeps it in Redis (rasa_project/sealed_store.py), opened."""
        raw = await self.redis.get(tracker_name(key))
        if raw is None:
            return None
        return json.loads(self.keys.open_text(as_text(raw), tracker_context(key)))

    async def reseal_rasa_trackers(self) -> Resealed:
        """Rasa's trackers sealed with the newest key (their expiry kept); one that a Rasa
        server saves meanwhile is read again."""
        done = Resealed()
        async for raw_name in self.redis.scan_iter(match=tracker_name("*"), count=500):
            name = as_text(raw_name)
            context = tracker_context(name.removeprefix(tracker_name("")))
            while True:
                try:
                    async with self.redis.pipeline(transaction=True) as pipe:
                        await pipe.watch(name)
                        raw = await pipe.get(name)
                        if raw is None or self.keys.text_is_current(as_text(raw)):
                            break
                        value = self.keys.seal_text(self.keys.open_text(as_text(raw), context), context)
                        pipe.multi()
                        pipe.set(name, value, keepttl=True)
                        await pipe.execute()
                        done.rewritten += 1
                        break
                except WatchError:
                    continue
                except SealingError as exc:
                    done.skip(name, exc)
                    break
        return done

    async def collect(self, ref: ShopperRef) -> ShopperData:
        data = ShopperData(ref, redis=self.redis is not None)
        conversations = [ref.conversation] if ref.conversation else []
        cases = await asyncio.to_thread(self.cases.of_shopper_sync, ref.customer_id, conversations)
        if ref.customer_id:  # their cases name their conversations; those may hold more cases
            conversations = sorted({c.conversation_id for c in cases if c.conversation_id})
            cases = await asyncio.to_thread(self.cases.of_shopper_sync, ref.customer_id, conversations)
        data.conversations, data.cases = conversations, cases
        for key in conversations:
            if self.redis is not None:
                entries = await self.journal().read(key)
                if entries:
                    data.transcripts[key] = [dataclasses.asdict(e) for e in entries]
                store = self.handoffs()
                record = await store.get(key)
                if record is not None:
                    log_lines = [e.to_dict() for e in await store.log(key)]
                    data.handoffs[key] = {"record": dataclasses.asdict(record), "log": log_lines}
                tracker = await self.rasa_tracker(key)
                if tracker is not None:
                    data.rasa_trackers[key] = tracker
            off_at = await asyncio.to_thread(self.update_choices.opted_out_at, key)
            if off_at is not None:
                data.updates_off[key] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(off_at))
            where = ConversationRef.parse(key)
            if where is not None and where.channel == "webchat":
                for file_id, meta in await asyncio.to_thread(self.uploads.files_of_sync, where.conversation_id):
                    data.uploads.append((key, file_id, meta))
        return data

    async def export(self, data: ShopperData, out: Path) -> list[Path]:
        """Write the document and the opened files into `out` (made 0700, files 0600)."""
        return await asyncio.to_thread(self._write_export, data, out)

    def _write_export(self, data: ShopperData, out: Path) -> list[Path]:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(f"{out} exists and is not an empty directory")
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        written = []

        def write(path: Path, body: bytes) -> None:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
            written.append(path)

        document = data.document()
        write(out / "shopper.json", json.dumps(document, ensure_ascii=False, indent=2, default=str).encode("utf-8"))
        for item, (_, file_id, _) in zip(document["uploads"], data.uploads, strict=True):
            write(out / item["file"], self.uploads.read_sync(file_id))
        return written

    async def unlink_analytics(self, key: str) -> int:
        """The analytics keep counts under a keyed hash of the conversation (handoff/analytics.py):
        an erased conversation's records get a random name instead."""
        from handoff.analytics import AnalyticsStore, RedisAnalyticsStore, SqliteAnalyticsStore, conversation_hash

        store: AnalyticsStore
        if self.redis is not None:
            store = RedisAnalyticsStore(self.redis)
        else:
            path = self.settings.data_dir / "analytics.sqlite3"
            if not path.exists():
                return 0
            store = SqliteAnalyticsStore(path)
        try:
            return await store.unlink(conversation_hash(ensure_secret(self.settings), key))
        finally:
            if isinstance(store, SqliteAnalyticsStore):
                store.close()

    async def erase(self, data: ShopperData) -> list[str]:
        """Delete what `collect` found; a line per thing removed."""
        done = []
        removed = await asyncio.to_thread(self.cases.erase_sync, [c.id for c in data.cases])
        done.append(f"cases: {removed} deleted ({', '.join(c.id for c in data.cases) or 'none'}), "
                    "with their history")
        for key in data.conversations:
            if self.redis is not None:
                entries = await self.journal().erase(key)
                had_handoff = await self.handoffs().erase(key)
                had_tracker = await self.redis.delete(tracker_name(key))
                ref = ConversationRef.parse(key)
                if ref is not None and ref.channel in OUTBOX_CHANNELS:
                    await RedisOutbox(self.redis, self.keys, ref.channel).erase(ref.conversation_id)
                done.append(f"{key}: transcript in Redis ({entries} entries) deleted; "
                            f"handoff {'record, log and queue place deleted' if had_handoff else 'none kept'}; "
                            f"Rasa's tracker {'deleted' if had_tracker else 'not in Redis'}")
            unlinked = await self.unlink_analytics(key)
            if unlinked:
                done.append(f"{key}: {unlinked} analytics record(s) renamed at random: the shop's counts stay, "
                            "nothing in them leads back to this conversation")
            forgotten = await asyncio.to_thread(self.proof_failures.forget_sync, key)
            if forgotten:
                done.append(f"{key}: {forgotten} wrong order-ownership answer(s) deleted")
            if await asyncio.to_thread(self.update_choices.forget_conversation, key):
                done.append(f"{key}: their choice to get no case updates deleted")
            ref = ConversationRef.parse(key)
            if ref is not None and ref.channel == "webchat":
                files = await asyncio.to_thread(self.uploads.erase_sync, ref.conversation_id)
                done.append(f"{key}: {files} uploaded file(s) deleted")
        return done

    async def reseal(self) -> list[tuple[str, Resealed]]:
        """Seal everything kept at rest with the newest key; what happened, per store."""
        from bot.inbox import RedisInbox

        done = [("cases (values)", await asyncio.to_thread(self.cases.reseal_sync)),
                ("uploads (files)", await asyncio.to_thread(self.uploads.reseal_sync))]
        if self.redis is not None:
            done += [("Redis transcripts (entries)", await self.journal().reseal_all()),
                     ("Redis handoffs (values)", await self.handoffs().reseal_all()),
                     ("Redis inbox (deliveries)", await RedisInbox(self.redis, self.keys).reseal_all()),
                     *[(f"Redis {channel} outbox (replies)", await RedisOutbox(self.redis, self.keys, channel).reseal_all())
                       for channel in OUTBOX_CHANNELS],
                     ("Rasa trackers in Redis", await self.reseal_rasa_trackers())]
        return done
