"""`./aftersales chat`: talk to the running stack from a terminal, as the web chat page does.

A real web chat client (docs/webchat-protocol.md): a `hello` with the locale, `message`
frames with ids of their own, the bot's `reply` frames printed as they come. Buttons are
shown as numbered choices; typing a number sends that button's payload with its title as
the text, exactly as the page does when a button is pressed. `/quit` or Ctrl-D ends.

`--order AS10001` starts the conversation about that order the way a shopper would: the
first message is "I have a question about order AS10001" (in the chosen language), and the
bot asks what to do with it. (A signed customer token would need the gateway's
`SHOP_CUSTOMER_SECRET` and a customer, and makes the bot offer that customer's orders, not
one order; and it skips the ownership question a shopper who is not signed in gets.)

A designer's tool: messages are not resent after a drop; the conversation ends with the
connection.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import IO, Any, Callable

import aiohttp
from yarl import URL

WS_PATH = "/webchat/ws"
LOCALES = {"en": "en", "zh": "zh-CN"}
OPENING = {"en": "I have a question about order {order}", "zh": "我有一个关于订单 {order} 的问题"}
PROMPT = "you> "
QUIT = ("/quit", "/exit")
MAX_TEXT = 4000  # the page's limit on a message, a button's title included
HELLO_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10.0
HELP = ("Type a message and press Enter. A number picks one of the buttons shown ([1], [2], ...); "
        "/quit or Ctrl-D ends, /help shows this.")


class ChatError(Exception):
    """The chat could not start or went on no more; the message says why, for the designer."""


def websocket_url(url: str) -> URL:
    """The web chat socket of the gateway at `url` (http(s)://host:port[/prefix], or ws(s)://.../webchat/ws)."""
    parsed = URL(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https", "ws", "wss") or not parsed.host:
        raise ChatError(f"{url!r} is not a gateway address like http://127.0.0.1:8080")
    scheme = {"http": "ws", "https": "wss"}.get(parsed.scheme, parsed.scheme)
    path = parsed.path.rstrip("/")
    if not path.endswith(WS_PATH):
        path += WS_PATH
    return parsed.with_scheme(scheme).with_path(path).with_query(None).with_fragment(None)


@dataclass
class Transcript:
    """What the designer sees: the bot's replies, numbered buttons, errors. `write` prints
    a whole line; in a terminal the prompt and what is being typed are drawn again below it."""

    write: Callable[[str], None]
    choices: list[dict[str, str]] = field(default_factory=list)
    fresh: bool = True  # the shopper spoke since the last buttons: the next ones are numbered from 1

    def reply(self, frame: dict[str, Any]) -> None:
        who = frame.get("author") or "bot"
        if frame.get("holding"):
            who += " (holding)"
        text = str(frame.get("text") or "").splitlines() or [""]
        indent = " " * (len(who) + 2)
        out = [f"{who}: {text[0]}", *(f"{indent}{line}" for line in text[1:])]
        if frame.get("image"):
            out.append(f"{indent}[image: {frame['image']}]")
        buttons = [b for b in frame.get("buttons") or () if isinstance(b, dict)]
        if buttons:
            if self.fresh:
                self.choices, self.fresh = [], False
            for button in buttons:
                title = str(button.get("title") or button.get("payload") or "")
                if not title:
                    continue
                self.choices.append({"title": title, "payload": str(button.get("payload") or "")})
                out.append(f"{indent}[{len(self.choices)}] {title}")
        if len(out) > 1 or text != [""]:
            self.write("\n".join(out))

    def error(self, frame: dict[str, Any]) -> None:
        self.write(f"! {frame.get('message') or frame.get('code')} ({frame.get('code')}: {frame.get('detail') or '-'})")

    def message_for(self, line: str) -> dict[str, Any]:
        """The `message` frame for what the designer typed: a number of a button shown
        presses it (its payload, its title as the text), anything else is said as it is."""
        frame: dict[str, Any] = {"type": "message", "id": str(uuid.uuid4())}
        text = line.strip()
        if text.isdigit() and 1 <= int(text) <= len(self.choices):
            button = self.choices[int(text) - 1]
            frame["text"] = button["title"][:MAX_TEXT]
            if button["payload"]:
                frame["payload"] = button["payload"]
            self.choices = []  # used, as the page greys a group out once one of its buttons is pressed
        else:
            frame["text"] = text
        self.fresh = True
        return frame


class Terminal:
    """Lines out, lines in. In a terminal (both ends a tty): a prompt, line editing
    (readline), and replies printed above the line being typed. Otherwise plain lines,
    and every line sent is shown too (a script piped in reads as a transcript)."""

    def __init__(self, stdin: IO[str], stdout: IO[str]) -> None:
        self.stdin, self.stdout = stdin, stdout
        self.interactive = stdin.isatty() and stdout.isatty()
        self.readline: Any = None
        if self.interactive:
            try:
                import readline

                self.readline = readline
                # Called once input() has drawn its prompt: from then on a reply printed
                # draws the prompt and the line being typed again, below it.
                readline.set_pre_input_hook(self._prompt_drawn)
            except ImportError:  # no readline on this Python: input() without line editing
                pass
        self._lock = threading.Lock()
        self._reading = False  # the reader thread is in input(): its prompt is on screen
        self._tty_state: Any = None

    @property
    def prompt(self) -> str:
        return PROMPT if self.interactive else ""

    def _prompt_drawn(self) -> None:
        with self._lock:
            self._reading = True

    def write(self, text: str) -> None:
        with self._lock:
            if self._reading:  # the line being typed moves below what is printed
                typed = self.readline.get_line_buffer() if self.readline is not None else ""
                self.stdout.write(f"\r\x1b[K{text}\n{self.prompt}{typed}")
            else:
                self.stdout.write(text + "\n")
            self.stdout.flush()

    def sent(self, typed: str, text: str) -> None:
        """Shows what was sent: in a terminal the line typed is on screen already, so only a
        button's title (or the opening message); otherwise every line."""
        if not self.interactive or typed != text:
            self.write(f"you: {text}")

    def start_reading(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
        """Lines typed, read in a thread of their own (input() blocks); None at the end of input."""
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        if self.interactive:
            try:
                import termios

                self._tty_state = termios.tcgetattr(self.stdin.fileno())  # put back by `stop`
            except (ImportError, OSError):
                pass

        def read() -> None:
            while True:
                try:
                    if self.interactive:
                        if self.readline is None:
                            with self._lock:
                                self._reading = True
                        try:
                            line: str | None = input(self.prompt)
                        finally:
                            with self._lock:
                                self._reading = False
                    else:
                        raw = self.stdin.readline()
                        line = raw.rstrip("\r\n") if raw else None
                except (EOFError, OSError, ValueError):
                    line = None
                    if self.interactive:
                        self.write("")  # Ctrl-D leaves the cursor after the prompt
                try:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
                except RuntimeError:  # the loop is gone: the chat ended
                    return
                if line is None or line.strip() in QUIT:
                    return

        # A daemon thread: a read still waiting for a line does not keep the command from ending.
        threading.Thread(target=read, name="chat-stdin", daemon=True).start()
        return lines

    def stop(self) -> None:
        """The terminal as it was, also when the chat ends while readline is reading a line."""
        if self._tty_state is not None:
            import termios

            try:
                termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._tty_state)
            except OSError:
                pass
        with self._lock:
            if self._reading:  # the chat ended while a line was being typed: the prompt goes
                self.stdout.write("\r\x1b[K")
                self.stdout.flush()
            self._reading = False


async def chat(url: str, lang: str = "en", order: str | None = None, terminal: Terminal | None = None) -> int:
    """Talk to the gateway at `url` until the designer ends it; the exit status."""
    terminal = terminal or Terminal(sys.stdin, sys.stdout)
    ws_url = websocket_url(url)
    transcript = Transcript(terminal.write)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            ws = await session.ws_connect(ws_url, autoping=True, max_msg_size=1 << 20)
        except aiohttp.WSServerHandshakeError as exc:
            raise ChatError(f"{url} answers, but not as a gateway's web chat (HTTP {exc.status} at {ws_url}); "
                            "is it the gateway's address?") from None
        except (aiohttp.ClientError, OSError, TimeoutError):
            raise ChatError(f"no gateway answers at {url}; start it with ./aftersales run") from None
        async with ws:
            conversation = await _hello(ws, LOCALES[lang], transcript)
            terminal.write(f"Connected to {url}: conversation webchat:{conversation}, locale {LOCALES[lang]}.\n{HELP}")
            if order:
                opening = OPENING[lang].format(order=order)
                terminal.sent("", opening)
                await ws.send_json(transcript.message_for(opening))
            lines = terminal.start_reading(asyncio.get_running_loop())
            receiving = asyncio.create_task(_receive(ws, transcript))
            typing = asyncio.create_task(_send_typed(ws, lines, transcript, terminal))
            tasks: list[asyncio.Task[Any]] = [receiving, typing]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                terminal.stop()
            if receiving in done and not receiving.cancelled() and receiving.exception() is None:
                terminal.write(f"The gateway ended the conversation ({receiving.result()}).")
                return 1
            for task in done:
                try:
                    task.result()  # a send or a receive that failed: raised here
                except (aiohttp.ClientError, ConnectionError) as exc:
                    raise ChatError(f"the connection to {url} broke ({exc or type(exc).__name__})") from None
    return 0


async def _hello(ws: aiohttp.ClientWebSocketResponse, locale: str, transcript: Transcript) -> str:
    await ws.send_json({"type": "hello", "token": None, "locale": locale})
    try:
        async with asyncio.timeout(HELLO_TIMEOUT_SECONDS):
            while True:
                frame = await _session_frame(ws)
                if frame.get("type") == "session":
                    return str(frame["conversation_id"])
                if frame.get("type") == "error":
                    transcript.error(frame)
                    if frame.get("code") == "rate_limited":
                        raise ChatError("the gateway refuses new conversations from this address for now; try "
                                        "again in a minute (WEBCHAT_NEW_SESSIONS_PER_MINUTE)")
    except TimeoutError:
        raise ChatError(f"the web chat socket answered no hello within {HELLO_TIMEOUT_SECONDS:g} s; "
                        "is it the gateway's address?") from None


async def _session_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next frame while waiting for `session`."""
    msg = await ws.receive()
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise ChatError(f"the gateway closed the socket before the conversation began ({_closed(ws, msg)})")
    try:
        frame = json.loads(msg.data)
    except ValueError:
        frame = None
    if not isinstance(frame, dict) or "type" not in frame or (frame["type"] == "session"
                                                               and "conversation_id" not in frame):
        raise ChatError("the socket does not speak the web chat protocol (docs/webchat-protocol.md); "
                        "is it the gateway's address?")
    return frame


async def _receive(ws: aiohttp.ClientWebSocketResponse, transcript: Transcript) -> str:
    """Prints what the gateway sends until it closes the socket; how it closed it."""
    while True:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return _closed(ws, msg)
        try:
            frame = json.loads(msg.data)
        except ValueError:
            continue
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "reply":
            transcript.reply(frame)
        elif kind == "error":
            transcript.error(frame)
        # session, ack, typing, history, pong: nothing to show


def _closed(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> str:
    code = ws.close_code
    why = msg.extra if isinstance(msg.extra, str) and msg.extra else ""
    return f"socket closed, code {code}{': ' + why if why else ''}" if code else f"socket {msg.type.name.lower()}"


async def _send_typed(ws: aiohttp.ClientWebSocketResponse, lines: asyncio.Queue[str | None],
                      transcript: Transcript, terminal: Terminal) -> None:
    while True:
        line = await lines.get()
        if line is None or line.strip() in QUIT:
            return
        if not line.strip():
            continue
        if line.strip() == "/help":
            terminal.write(HELP)
            continue
        frame = transcript.message_for(line)
        terminal.sent(line.strip(), frame["text"])
        await ws.send_json(frame)


def main(url: str, lang: str, order: str | None) -> int:
    """The `chat` command: the exit status (errors on stderr)."""
    try:
        return asyncio.run(chat(url, lang, order))
    except ChatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
