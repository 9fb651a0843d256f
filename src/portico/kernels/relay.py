"""ZeroMQ <-> WebSocket for one kernel.

One iopub SUB socket per kernel: each message is numbered in the kernel's journal and
fanned out to every client.  Each client connection gets its own DEALER sockets for shell,
control and stdin; shell and stdin share an identity so the kernel's input_request reaches
the client that ran the code.  The v1 protocol relays frames as they came; the JSON
protocol is assembled from the raw frames (only the header is read).  A client that
reconnects (same session_id) or asks with ?since=N gets what it missed from the journal.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import zmq
import zmq.asyncio
from aiohttp import WSMsgType, web

from ..errors import Close
from . import wire
from .journal import Journal
from .outbox import Outbox, RateLimit

log = logging.getLogger("portico")

REMEMBERED_SESSIONS = 1000  # journal positions kept for clients that went away
UNKNOWN_PAST = 1 << 40  # where numbering resumes when the previous server's is unknown (it crashed)
DRAIN_WAIT = 50  # ms without a message that ends the old subscription's drain at a restart
BARRIER_QUIET = 0.5  # s without iopub that ends the wait, for a kernel that publishes no status for control
PROBE_LIMIT = 5.0  # s a kernel gets to publish status for a control request before it is taken not to
MAX_TRACKED = 10_000  # unanswered client requests remembered per kernel (for the replies a restart owes)
# s a request may go without its reply once its status: idle came.  ipykernel loses the reply of
# a request when an interrupt lands while it sends it ("KeyboardInterrupt caught in kernel"):
# the client would wait for ever; past this Portico answers it.  The reply, sent before the
# idle, trails it only by the time between two sockets' reads: 5 s is a stall, not a busy machine.
REPLY_GRACE = 5.0
FAIRNESS_BURST = 16  # iopub messages relayed before the fan-out lets other tasks run

# jupyter_client numbers every message a kernel's session sends: msg_id is "<session>_<pid>_<n>"
MSG_NUMBER = re.compile(rb'"msg_id"\s*:\s*"([^"]+)_([0-9]+)"')
HANDSHAKE_WAIT = 10.0  # s a socket that needs its route to the kernel waits for the handshake
NUMBERING_SLACK = 8  # numbers an iopub gap may skip (replies on other channels arriving late) before it is a loss

Stats = Counter[tuple[str, str]]  # (channel, "to_kernel" | "from_kernel") -> messages


@dataclass(frozen=True)
class RelayOptions:
    client_limit: int
    journal_bytes: int
    journal_age: float
    rate_limit: tuple[float, float, float] | None  # (msgs/s, bytes/s, window) when limit_rate is on
    output_wait: float = (
        10.0  # s a restart waits at most for the iopub published before it (kernel_restart_output_wait)
    )


class Numbering:
    """Finds holes in a kernel's iopub from the numbers jupyter_client puts in every msg_id.

    One counter numbers all of a kernel session's messages, on every channel; so a hole between
    two iopub messages that replies seen on other channels do not fill is iopub lost before it
    reached Portico (a PUB socket at its high-water mark drops, and says nothing).
    """

    def __init__(self) -> None:
        self.others = 0  # messages from the kernel on shell, control and stdin
        self._session = b""
        self._last = 0
        self._others_then = 0

    def lost_before(self, header: bytes) -> int:
        """How many messages are missing just before this iopub message (0 when none, or unknown)."""
        m = MSG_NUMBER.search(header)
        if m is None:
            return 0
        session, number = m.group(1), int(m.group(2))
        lost = 0
        if session == self._session:
            lost = number - self._last - 1 - (self.others - self._others_then)
        self._session, self._last, self._others_then = session, number, self.others
        return lost if lost > NUMBERING_SLACK else 0


@dataclass
class Request:
    """A client's message on shell or control that its kernel has not finished (no status: idle yet)."""

    client: Client
    channel: str
    parts: list[bytes]
    started: bool = False  # the kernel said busy for it
    answered: bool = False  # its reply came
    idle: bool = False  # its status: idle came (it is forgotten once both have, or idle alone with no reply due)

    @property
    def expects_reply(self) -> bool:
        return b'_request"' in self.parts[0]  # a comm_msg, say, has no reply


def taken(received: Awaitable[list[bytes]]) -> list[bytes] | None:
    """What a receive had already taken off its socket when the task awaiting it was cancelled
    (it completed, but the task had not resumed yet): relayed by the caller, or it is lost."""
    if (
        isinstance(received, asyncio.Future)
        and received.done()
        and not received.cancelled()
        and received.exception() is None
    ):
        frames: list[bytes] = received.result()
        return frames
    return None


def curve_keys(connection: dict[str, Any]) -> tuple[Any, Any]:
    return connection["curve_publickey"], connection["curve_secretkey"]


def msg_id_of(header: bytes) -> str | None:
    try:
        msg_id = orjson.loads(header).get("msg_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return msg_id if isinstance(msg_id, str) else None


class Handshake:
    """The wait for a socket's handshake with the kernel (KernelRelay.connect_watched)."""

    def __init__(self, sock: zmq.asyncio.Socket, channel: str) -> None:
        self.sock, self.channel = sock, channel
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)

    async def wait(self) -> None:
        """Until the kernel has the connection, or HANDSHAKE_WAIT (logged) if it never says so."""
        try:
            async with asyncio.timeout(HANDSHAKE_WAIT):
                await self.monitor.recv_multipart()
        except TimeoutError:
            log.warning("a %s socket's handshake with the kernel took over %g s", self.channel, HANDSHAKE_WAIT)
        finally:
            self.close()

    def close(self) -> None:
        if not self.monitor.closed:
            if not self.sock.closed:
                self.sock.disable_monitor()
            self.monitor.close(linger=0)


class Client:
    """One WebSocket connection to a kernel and its own shell, control and stdin sockets."""

    def __init__(
        self, relay: KernelRelay, ws: web.WebSocketResponse, session_id: str, aware: bool, abort: Callable[[], None]
    ) -> None:
        self.relay = relay
        self.ws = ws
        self.session_id = session_id
        self.v1 = ws.ws_protocol == wire.V1_PROTOCOL
        self.aware = aware  # asked with ?since=: iopub metadata carries portico_seq
        self.kind = (self.v1, aware)  # clients of one kind share one encoding of a message
        self.outbox = Outbox(ws, relay.options.client_limit, abort, self.encode_iopub)
        limits = relay.options.rate_limit
        self.limit = RateLimit(*limits) if limits else None
        self.identity = uuid.uuid4().hex.encode()
        self.sockets: dict[str, zmq.asyncio.Socket] = {}  # opened on first use: idle clients cost none
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self.early: list[list[bytes]] | None = None  # shell messages held until stdin is connected
        self.handshake: Handshake | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.gone = False
        self.lagging = False  # reading from the journal until it catches up (outbox.py, step 3)
        self.wanted = 0  # while lagging: the journal position it reads next
        self.catching_up: asyncio.Task[None] | None = None

    def encode(self, channel: bytes, parts: list[bytes]) -> tuple[bytes, bool]:
        if self.v1:
            return wire.to_v1(channel, parts), True
        return wire.to_json(channel, parts, orjson.loads(parts[0]))

    def encode_iopub(self, parts: list[bytes], seq: int) -> tuple[bytes, bool]:
        return self.encode(b"iopub", wire.with_seq(parts, seq) if self.aware else parts)

    def send(self, channel: bytes, parts: list[bytes]) -> None:
        self.outbox.put(*self.encode(channel, parts))

    def deliver(self, parts: list[bytes], seq: int, encoded: tuple[bytes, bool]) -> None:
        """One iopub message, already encoded for this client's kind."""
        if self.limit is not None and not self._within_limit(parts):
            return
        if self.lagging:  # catch_up takes it from the journal, unless what it needs next is gone
            if self.relay.journal.first_seq > self.wanted:
                self._fell_behind()
            return
        if not self.outbox.fits(len(encoded[0])) and self.relay.journal.max_bytes > 0:
            self.lagging, self.wanted = True, seq
            self.catching_up = asyncio.create_task(self.catch_up())  # one at a time: lagging until it ends
            return
        self.outbox.put(encoded[0], encoded[1], seq, parts)

    async def catch_up(self) -> None:
        """Feed this client from the journal, from self.wanted on, as fast as it reads; live again
        once it has all (no await between that check and going live: nothing missed, nothing twice)."""
        while not self.outbox.overflowed:
            await self.outbox.roomy()
            journal = self.relay.journal
            if self.wanted >= journal.next_seq:
                self.lagging = False
                return
            parts = journal.get(self.wanted)
            if parts is None:
                self._fell_behind()
                return
            self.outbox.put(*self.encode_iopub(parts, self.wanted), self.wanted, parts)
            self.wanted += 1

    def _fell_behind(self) -> None:
        self.outbox.overflow(
            f"it fell behind what the journal keeps (it needs {self.wanted}, the journal starts "
            f"at {self.relay.journal.first_seq}; journal_max_bytes, journal_max_age)"
        )

    def _within_limit(self, parts: list[bytes]) -> bool:
        assert self.limit is not None
        header = orjson.loads(parts[0])
        allowed, notice = self.limit.allow(header.get("msg_type", ""), sum(map(len, parts)), time.monotonic())
        if notice:
            text = self.limit.notice(notice)
            log.warning("%s (session %s)", text.splitlines()[0], self.session_id)
            parent = orjson.loads(parts[1]) if parts[1] != b"{}" else None
            self.send(b"iopub", wire.build("stream", {"name": "stderr", "text": text}, parent).parts)
        return allowed

    def notify_gap(self, first: int, last: int) -> None:
        built = wire.build("portico_journal_gap", {"first": first, "last": last})
        self.send(b"iopub", built.parts)

    def send_error(self, text: str, channel: str = "shell", parent: dict[str, Any] | None = None) -> None:
        """Tell this client (only) that its message was refused, and why."""
        built = wire.build("portico_error", {"ename": "BadMessage", "evalue": text}, parent)
        self.send(channel.encode(), built.parts)

    async def pump(self, channel: str) -> None:
        sock = self.sockets[channel]
        while True:
            received = sock.recv_multipart()
            try:
                frames = await received
            except asyncio.CancelledError:
                late = taken(received)
                if late is not None and not self.gone:
                    self._from_kernel(channel, late)
                raise
            self._from_kernel(channel, frames)

    def _from_kernel(self, channel: str, frames: list[bytes]) -> None:
        relay = self.relay
        parts = relay.accept(frames, channel)
        if parts is not None and not (relay.cut and relay.was_cut(parts[1])):
            if relay.answered_for and channel != "stdin" and msg_id_of(parts[1]) in relay.answered_for:
                log.info("a kernel's reply came after Portico had given it (%s); not relayed", channel)
                return
            if relay.requests and channel != "stdin":  # an input_request does not answer its request
                msg_id = msg_id_of(parts[1]) or ""
                request = relay.requests.get(msg_id)
                if request is not None:
                    request.answered = True
                    if request.idle:
                        del relay.requests[msg_id]
            try:
                self.send(channel.encode(), parts)
            except Exception:
                log.exception("failed to relay a %s message", channel)

    def start(self) -> None:
        self.tasks.append(self.outbox.start())

    def socket(self, channel: str) -> zmq.asyncio.Socket:
        """This client's socket for channel, opened (with its pump) the first time it is needed.

        Shell opens stdin first, with the same identity, and what the client sends on shell waits
        (forward) until the kernel has the stdin connection: the kernel's input_request for it
        always has a route back.
        """
        sock = self.sockets.get(channel)
        if sock is None:
            if channel == "shell" and "stdin" not in self.sockets:
                self.socket("stdin")
            if channel == "stdin":
                sock, self.handshake = self.relay.connect_watched(zmq.DEALER, channel, self.identity)
                self.early = []
                self.pumps["handshake"] = asyncio.create_task(self._release_early(self.handshake))
            else:
                sock = self.relay.connect(zmq.DEALER, channel, self.identity)
            self.sockets[channel] = sock
            self.pumps[channel] = asyncio.create_task(self.pump(channel))
        return sock

    def forward(self, channel: str, parts: list[bytes]) -> None:
        """To the kernel, on this client's socket for channel."""
        sock = self.socket(channel)
        if channel == "shell" and self.early is not None:
            self.early.append(parts)
        else:
            self.relay.to_kernel(sock, channel, parts)

    async def _release_early(self, handshake: Handshake) -> None:
        await handshake.wait()
        early, self.early = self.early or [], None
        for parts in early:
            self.relay.to_kernel(self.sockets["shell"], "shell", parts)

    def close_sockets(self) -> None:
        """Close this client's kernel sockets (and whatever they still queue); reopened on next use."""
        for task in self.pumps.values():
            task.cancel()
        if self.handshake is not None:
            self.handshake.close()
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.pumps.clear()
        self.sockets.clear()
        self.early, self.handshake = None, None  # tracked in relay.requests: a restart answers them (release)

    async def receive(self) -> None:
        """Read the client's messages until it goes, relaying each to the kernel."""
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                self.from_client(msg.data, text=True)
            elif msg.type == WSMsgType.BINARY:
                self.from_client(msg.data, text=False)

    def from_client(self, data: Any, text: bool) -> None:
        parent = None
        try:
            if self.v1:
                if text:
                    raise wire.WireError("text frame on the v1 protocol: every frame must be binary")
                channel, parts = wire.from_v1(data)
                if not parts[0].startswith(b"{"):
                    raise wire.WireError("message has no header")
            else:
                msg, buffers = (wire.parse_json(data), []) if text else wire.from_json_binary(data)
                parent = msg.get("header") if isinstance(msg.get("header"), dict) else None
                channel = msg.get("channel")  # type: ignore[assignment]
                parts = wire.parts_from_json(msg) + buffers
            if channel not in wire.CHANNELS:
                raise wire.WireError(f"unknown channel {channel!r}; use shell, control or stdin")
        except wire.WireError as e:
            self.send_error(str(e), parent=parent)
            return
        self.relay.submit(self, channel, parts)

    async def close(self, code: int, message: str) -> None:
        await self.outbox.close(code, message)
        self.stop()

    def stop(self) -> None:
        self.gone = True
        self.outbox.stop()
        for task in self.tasks:
            task.cancel()
        if self.catching_up is not None:
            self.catching_up.cancel()
        self.close_sockets()


class KernelRelay:
    """The channels of one kernel: iopub fan-out and journal, per-client sockets, readiness."""

    def __init__(
        self,
        context: zmq.asyncio.Context,
        connection: dict[str, Any],
        stats: Stats,
        options: RelayOptions,
        on_status: Callable[[str], None],
        iopub_hwm: int = 0,
    ) -> None:
        self.context = context
        self.connection = connection
        key = connection["key"]
        self.signer = wire.Signer(key if isinstance(key, bytes) else key.encode())
        self.stats = stats
        self.options = options
        self.on_status = on_status
        # The iopub subscription's queue: bounded when the kernel holds what Portico has not read
        # (its iopub never drops: ipykernel_boot.py), so a flood faster than Portico costs the
        # kernel memory, not Portico; else no limit, so Portico takes what the kernel would drop.
        self.iopub_hwm = iopub_hwm
        self.journal = Journal(options.journal_bytes, options.journal_age)
        self.clients: dict[str, Client] = {}
        self.positions: OrderedDict[str, int] = OrderedDict()  # session_id -> last seq written
        self.last_activity = time.time()
        self._idle_for: dict[str, asyncio.Event] = {}  # msg_id -> set when its status: idle arrives
        self.taps: dict[str, Callable[[list[bytes]], None]] = {}  # parent msg_id -> observer of its iopub
        # told why, when what was sent to the kernel can no longer be answered by it (restart, death, close)
        self.watchers: set[Callable[[str], None]] = set()
        self.numbering = Numbering()
        self.requests: dict[str, Request] = {}  # msg_id -> sent to the kernel, not finished yet
        self._held: list[Request] | None = None  # client messages waiting while the kernel restarts
        self._orphans: dict[str, Request] = {}  # sent to the kernel a restart replaced, never answered
        self.control_status: bool | None = None  # publishes status for control requests (None: not known yet)
        self._probe: asyncio.Task[None] | None = None
        self._went_idle = asyncio.Event()  # a tracked request got its status: idle
        self.cut: set[str | None] = set()  # msg_ids a restart cut: the old kernel's answers are not relayed
        self.answered_for: OrderedDict[str, None] = OrderedDict()  # msg_ids whose lost reply Portico gave
        self._iopub, self._task = self._subscribe()

    def _subscribe(self) -> tuple[zmq.asyncio.Socket, asyncio.Task[None]]:
        """The one iopub subscription of this kernel, and the task that fans it out."""
        self.welcomed = asyncio.Event()  # the kernel greeted this subscription (protocol 5.5)
        sock = self.connect(zmq.SUB, "iopub")
        sock.setsockopt(zmq.RCVHWM, self.iopub_hwm)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        return sock, asyncio.create_task(self._fan_out(sock))

    def connect(self, kind: int, channel: str, identity: bytes | None = None) -> zmq.asyncio.Socket:
        sock = self._socket(kind, identity)
        sock.connect(self._address(channel))
        return sock

    def connect_watched(self, kind: int, channel: str, identity: bytes) -> tuple[zmq.asyncio.Socket, Handshake]:
        """connect, with a watch on the handshake (the kernel's ROUTER drops, without a word,
        what it sends to a peer whose handshake is not done: an input_request to a stdin socket
        that is still connecting)."""
        sock = self._socket(kind, identity)
        handshake = Handshake(sock, channel)
        sock.connect(self._address(channel))
        return sock, handshake

    def _socket(self, kind: int, identity: bytes | None) -> zmq.asyncio.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        if identity is not None:
            sock.setsockopt(zmq.IDENTITY, identity)
        c = self.connection
        if c.get("curve_publickey"):  # CurveZMQ: the kernel's key pair, which its connection info carries
            public, secret = (key if isinstance(key, bytes) else key.encode() for key in curve_keys(c))
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = public, public, secret
        return sock

    def _address(self, channel: str) -> str:
        c = self.connection
        separator = ":" if c["transport"] == "tcp" else "-"
        return f"{c['transport']}://{c['ip']}{separator}{c[channel + '_port']}"

    def accept(self, frames: list[bytes], channel: str) -> list[bytes] | None:
        """The parts of a kernel message whose signature holds, else None (logged)."""
        try:
            signature, parts = wire.split_zmq(frames)
        except wire.WireError as e:
            log.warning("dropped a malformed %s message from a kernel: %s", channel, e)
            return None
        if not self.signer.verify(signature, parts):
            log.warning("dropped a %s message with a bad signature", channel)
            return None
        self.stats[channel, "from_kernel"] += 1
        if channel != "iopub":
            self.numbering.others += 1
        self.last_activity = time.time()
        return parts

    def submit(self, client: Client, channel: str, parts: list[bytes]) -> None:
        """A client's message: to the kernel, or held while the kernel restarts."""
        if self._held is not None:
            if channel != "stdin":  # an input_reply is for a kernel that is gone
                self._held.append(Request(client, channel, parts))
            return
        if channel != "stdin":
            msg_id = msg_id_of(parts[0])
            if msg_id is not None:
                self.requests[msg_id] = Request(client, channel, parts)
                if len(self.requests) > MAX_TRACKED:
                    del self.requests[next(iter(self.requests))]
        client.forward(channel, parts)

    def to_kernel(self, sock: zmq.asyncio.Socket, channel: str, parts: list[bytes]) -> None:
        sock.send_multipart(self.signer.frames(parts))
        self.stats[channel, "to_kernel"] += 1
        self.last_activity = time.time()

    async def _fan_out(self, sock: zmq.asyncio.Socket) -> None:
        burst = 0
        while True:
            # zmq.asyncio hands back queued messages without suspending: yield now and then so
            # the writers drain the outboxes while the kernel floods.
            burst += 1
            if burst == FAIRNESS_BURST:
                burst = 0
                await asyncio.sleep(0)
            received = sock.recv_multipart()
            try:
                frames = await received
            except asyncio.CancelledError:  # a restart moves the subscription
                late = taken(received)
                if late is not None:
                    self._relay_iopub(late)
                raise
            self._relay_iopub(frames)

    def _relay_iopub(self, frames: list[bytes]) -> None:
        parts = self.accept(frames, "iopub")
        if parts is None:
            return
        if self.cut and self.was_cut(parts[1]):
            self.numbering.lost_before(parts[0])  # it reached Portico: not a hole, only not relayed
            return
        content = parts[3]
        if len(content) < 64 and b'"subscription"' in content and b'"iopub_welcome"' in parts[0]:
            # Protocol 5.5 (ipykernel 7): the kernel's XPUB greets each new subscription. This
            # one is Portico's own (clients subscribe to Portico, not to the kernel): not relayed.
            self.numbering.lost_before(parts[0])
            self.welcomed.set()
            return
        try:
            if len(content) < 64 and b"execution_state" in content:
                state = orjson.loads(content).get("execution_state", "")
                waiter = self._idle_for.get(msg_id_of(parts[1]) or "") if self._idle_for else None
                if waiter is not None:
                    # Portico's own request (the start's kernel_info, the control probe, a restart's
                    # barrier): the kernel is not busy for anyone, and no client asked.
                    if state == "idle":
                        waiter.set()
                    lost = self.numbering.lost_before(parts[0])
                    if lost:
                        self._tell_lost(lost, parts)
                    return
                self.on_status(state)
                if self.requests:
                    self._track(state, parts[1])
            lost = self.numbering.lost_before(parts[0])
            if lost:
                self._tell_lost(lost, parts)
            self.broadcast(parts)
        except Exception:  # one bad message must not stop the kernel's output
            log.exception("failed to relay an iopub message")

    def _track(self, state: str, parent: bytes) -> None:
        msg_id = msg_id_of(parent) or ""
        request = self.requests.get(msg_id)
        if request is None:
            return
        if state == "busy":
            request.started = True
        elif state == "idle":
            request.idle = True
            self._went_idle.set()
            if request.answered or not request.expects_reply:
                del self.requests[msg_id]
            else:
                asyncio.get_running_loop().call_later(REPLY_GRACE, self._reply_overdue, msg_id, request)

    def _reply_overdue(self, msg_id: str, request: Request) -> None:
        """A request the kernel ended without its reply: the client gets one, from Portico."""
        if self.requests.get(msg_id) is not request or request.answered:
            return
        del self.requests[msg_id]
        self.answered_for[msg_id] = None
        if len(self.answered_for) > REMEMBERED_SESSIONS:
            self.answered_for.popitem(last=False)
        msg_type = orjson.loads(request.parts[0]).get("msg_type")
        log.warning(
            "a kernel ended a %s (%s) without replying to it within %g s of its idle; Portico answered it",
            msg_type,
            msg_id,
            REPLY_GRACE,
        )
        self._answer(
            request,
            "NoReply",
            "The kernel ended this request without a reply (an interrupt that lands while ipykernel "
            "sends its reply does this); its output above is all there is.",
        )

    async def _drain(self) -> None:
        """Relay what the iopub subscription still holds (a kernel's last words before a restart).

        All that is queued is read at once, then the socket is polled again: a poll per message
        waits for a turn of a busy event loop each time (in the soak, 531 messages took 45 s
        and held the restart that long)."""
        began, count = time.monotonic(), 0
        while await self._iopub.poll(DRAIN_WAIT):
            while True:
                try:
                    frames = await self._iopub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                count += 1
                self._relay_iopub(frames)
        took = time.monotonic() - began
        if took > 1:
            log.warning("the old kernel's last output: %d messages, relayed in %.1f s", count, took)

    # restarts ----------------------------------------------------------------------------
    def hold(self) -> None:
        """From now until release(), what clients send waits here instead of going to a kernel."""
        if self._held is None:
            self._held = []

    async def barrier(self) -> None:
        """Before a restart's shutdown: let what the kernel finished reach its clients, then cut.

        A kernel's iopub can run far behind its replies (its own queue holds what Portico has
        not read yet), and what is queued dies with the process.  A kernel_info_request on
        control makes the kernel publish busy and idle for it behind everything it published
        before; its idle arriving is the barrier, waited for at most options.output_wait (a stalled
        TCP connection can pause for seconds before it flows again).  A kernel found not to
        publish status for control (probe_control) is waited for only while its iopub flows.
        Then every request the kernel answered gets to its status: idle.

        What the kernel had not answered by then is cut: the old kernel's replies and output
        for it are no longer relayed, and release() answers it KernelRestarted.  So a request
        is either whole (its reply, all its output, idle) or cut (a prefix of its output and an
        error that says so), never a reply ok whose output ended with the old process.
        """
        try:  # (asyncio.timeout raises on leaving its block: caught outside it)
            async with asyncio.timeout(self.options.output_wait):
                await self._caught_up()
        except TimeoutError:
            log.warning(
                "a kernel's iopub did not catch up within %g s of its restart (kernel_restart_output_wait); "
                "the rest is cut",
                self.options.output_wait,
            )
        self.cut = {msg_id for msg_id, request in self.requests.items() if not request.answered}

    async def _caught_up(self) -> None:
        if self.control_status is False:
            while True:
                seen = self.stats["iopub", "from_kernel"]
                await asyncio.sleep(BARRIER_QUIET)
                if self.stats["iopub", "from_kernel"] == seen:
                    break
        elif not await self._control_idle(self.options.output_wait):
            return
        while any(request.answered and not request.idle for request in self.requests.values()):
            self._went_idle.clear()
            await self._went_idle.wait()

    def was_cut(self, parent: bytes) -> bool:
        """A message from the old kernel for a request a restart cut (not relayed)."""
        return msg_id_of(parent) in self.cut

    async def probe_control(self) -> None:
        """Learn whether this kernel publishes status for control requests (barrier relies on it)."""
        self.control_status = await self._control_idle(PROBE_LIMIT)
        if not self.control_status:
            log.info("a kernel publishes no status for control requests: its restarts wait for its iopub to go quiet")

    async def _control_idle(self, limit: float) -> bool:
        """A kernel_info_request on control; whether its status: idle came on iopub within limit s."""
        sock = self.connect(zmq.DEALER, "control", uuid.uuid4().hex.encode())
        request = wire.build("kernel_info_request", {})
        idle = self._idle_for[request.header["msg_id"]] = asyncio.Event()
        try:
            await sock.send_multipart(self.signer.frames(request.parts))
            async with asyncio.timeout(limit):
                await idle.wait()
            return True
        except TimeoutError:
            return False
        finally:
            del self._idle_for[request.header["msg_id"]]
            sock.close(linger=0)

    async def reattach(self, connection: dict[str, Any]) -> None:
        """Sockets anew, to the restarted kernel's connection (its host and ports may differ).

        The old subscription is drained first, so the old kernel's last output is relayed.
        What the clients' old sockets still queued is discarded with them: those requests are
        answered by release(), never sent on to the new kernel unasked.
        """
        self.connection = connection
        key = connection["key"]
        self.signer = wire.Signer(key if isinstance(key, bytes) else key.encode())
        self._task.cancel()
        await self._drain()
        self._iopub.close(linger=0)
        self._iopub, self._task = self._subscribe()
        for client in self.clients.values():
            client.close_sockets()
        self._orphans.update(self.requests)
        self.requests = {}

    def release(self, why: str, failure: str | None = None) -> None:
        """After a restart: answer what the old kernel never answered, then send what was held.

        why says what happened to the kernel ("died", "was restarted"); with failure (the kernel
        did not come back) the held messages are answered with it instead of being sent.
        """
        told = (failure[:1].upper() + failure[1:]) if failure else f"The kernel {why}."
        for watcher in list(self.watchers):
            watcher(told)
        orphans, self._orphans = {**self._orphans, **(self.requests if failure else {})}, {}
        self.cut = set()
        # The kernel runs shell requests in order: the one it died in is the one it said busy for,
        # or, when that status was lost with the kernel, the earliest one sent.
        running = any(request.started and not request.answered for request in orphans.values())
        for request in orphans.values():
            if request.answered or not request.expects_reply:  # only the end of its output died with the kernel
                if not request.idle:
                    header = orjson.loads(request.parts[0])
                    self._tell_cut(header, why)
                    self.broadcast(wire.build("status", {"execution_state": "idle"}, header).parts)
            elif request.started or request.idle or (not running and request.channel == "shell"):
                running = True
                ename = "DeadKernelError" if why == "died" else "KernelRestarted"
                self._answer(request, ename, f"The kernel {why} while it ran this request.")
            else:
                self._answer(request, "KernelRestarted", f"Not run: the kernel {why} before it ran this request.")
        held, self._held = self._held or [], None
        for request in held:
            if request.client.gone:
                continue
            if failure:
                self._answer(request, "KernelRestarted", f"Not run: {failure}")
            else:
                self.submit(request.client, request.channel, request.parts)

    def _answer(self, request: Request, ename: str, evalue: str) -> None:
        """An error reply to one request, from Portico (and its error output, for an execute)."""
        if request.client.gone:
            return
        header = orjson.loads(request.parts[0])
        msg_type = str(header.get("msg_type", ""))
        error = {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}
        if msg_type == "execute_request" and not request.idle:  # else the kernel said how it ended
            self.broadcast(wire.build("error", error, header).parts)
        if msg_type.endswith("_request"):
            content: dict[str, Any] = {"status": "error", **error}
            if msg_type == "execute_request":
                content["execution_count"] = None
            request.client.send(
                request.channel.encode(), wire.build(msg_type[: -len("_request")] + "_reply", content, header).parts
            )
        if not request.idle:
            self.broadcast(wire.build("status", {"execution_state": "idle"}, header).parts)

    def _tell_cut(self, parent: dict[str, Any], why: str) -> None:
        """A request the kernel finished, whose status: idle never came: the end of its output may
        have died in the kernel's queue.  Every client is told, in that request's output."""
        text = (
            f"[Portico] The kernel {why} before all the output of this request reached Portico: "
            "the end of it may be missing.\n"
        )
        self._notice(text, None, parent)

    def _notice(self, text: str, lost: int | None, parent: dict[str, Any] | None) -> None:
        """A stderr stream from Portico to every client, in parent's output, with metadata.portico_lost
        (how many messages were lost; None when the count is not known)."""
        built = wire.build("stream", {"name": "stderr", "text": text}, parent)
        self.broadcast([built.parts[0], built.parts[1], orjson.dumps({"portico_lost": lost}), built.parts[3]])

    def _tell_lost(self, lost: int, parts: list[bytes]) -> None:
        """Every client is told, in the output of the request the gap ended in, how much is missing."""
        log.warning("%d iopub messages from a kernel never reached Portico (the kernel's iopub queue was full)", lost)
        text = (
            f"[Portico] {lost} output messages from the kernel were lost before they reached Portico: the "
            "kernel's iopub queue overflowed while Portico was not reading (see kernel_iopub_hwm).\n"
        )
        self._notice(text, lost, orjson.loads(parts[1]) if parts[1] != b"{}" else None)

    def broadcast(self, parts: list[bytes]) -> None:
        """To every client, and to the observer of its parent request (Portico's own notices too)."""
        if self.taps:
            tap = self.taps.get(msg_id_of(parts[1]) or "")
            if tap is not None:
                tap(parts)
        seq = self.journal.append(parts)
        encoded: dict[tuple[bool, bool], tuple[bytes, bool]] = {}
        for client in self.clients.values():
            frame = encoded.get(client.kind)
            if frame is None:
                frame = encoded[client.kind] = client.encode_iopub(parts, seq)
            client.deliver(parts, seq, frame)

    def broadcast_status(self, state: str) -> None:
        """A status message from Portico itself (restarting, dead) to every client."""
        self.broadcast(wire.build("status", {"execution_state": state}).parts)

    async def wait_ready(self, timeout: float) -> None:
        """Until the kernel answers kernel_info and its iopub reaches our subscription.

        A SUB socket drops what is published before its subscription lands, so after each
        reply we wait for the status: idle that ends it on iopub, and ask again if it was
        lost; once the kernel has greeted the subscription (iopub_welcome, protocol 5.5) the
        idle is sure to come and is waited for, not asked again (a busy machine can take
        longer than 50 ms).  One request is outstanding at a time, and we return only once the kernel is
        idle, so no status of ours arrives after the kernel is handed out.
        """
        sock = self.connect(zmq.DEALER, "shell", uuid.uuid4().hex.encode())
        try:
            async with asyncio.timeout(timeout):
                while True:
                    request = wire.build("kernel_info_request", {})
                    idle = self._idle_for[request.header["msg_id"]] = asyncio.Event()
                    try:
                        await sock.send_multipart(self.signer.frames(request.parts))
                        await sock.recv_multipart()
                        if self.welcomed.is_set():  # subscribed for sure: the idle comes, however slowly
                            await idle.wait()
                        else:
                            async with asyncio.timeout(0.05):  # it follows the reply at once when subscribed
                                await idle.wait()
                        if self._probe is None:  # learnt once, in the background, not in the start's time
                            self._probe = asyncio.create_task(self.probe_control())
                        return
                    except TimeoutError:
                        pass
                    finally:
                        del self._idle_for[request.header["msg_id"]]
        finally:
            sock.close(linger=0)

    async def execute(self, code: str, timeout: float) -> dict[str, Any]:
        """Run code on a socket of Portico's own; the execute_reply's content."""
        sock = self.connect(zmq.DEALER, "shell", uuid.uuid4().hex.encode())
        request = wire.build(
            "execute_request",
            {
                "code": code,
                "silent": True,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        try:
            await sock.send_multipart(self.signer.frames(request.parts))
            async with asyncio.timeout(timeout):
                while True:
                    parts = self.accept(await sock.recv_multipart(), "shell")
                    if parts is not None and orjson.loads(parts[1]).get("msg_id") == request.header["msg_id"]:
                        content: dict[str, Any] = orjson.loads(parts[3])
                        return content
        finally:
            sock.close(linger=0)

    def reset_journal(self) -> None:
        """A fresh journal (a warm kernel's seeding is not its new owner's output)."""
        self.journal = Journal(self.options.journal_bytes, self.options.journal_age)

    def resume(self, journal: dict[str, Any] | None) -> None:
        """For a kernel a previous server ran: number its output on from where that server
        stopped, and know where its sessions were, so that a client that reconnects is told
        what the lost journal held (portico_journal_gap) instead of nothing.  After a crash
        (journal None) numbers start far past any the old server can have given."""
        journal = journal or {}
        self.journal.next_seq = int(journal.get("next_seq") or UNKNOWN_PAST)
        self.positions.update((str(k), int(v)) for k, v in (journal.get("positions") or {}).items())

    def kept(self) -> dict[str, Any]:
        """What resume() takes, for the next server."""
        return {"next_seq": self.journal.next_seq, "positions": dict(self.positions)}

    async def serve(
        self, ws: web.WebSocketResponse, session_id: str, since: int | None, abort: Callable[[], None]
    ) -> None:
        stale = self.clients.pop(session_id, None)
        if stale is not None:
            await stale.close(Close.REPLACED, "replaced by a newer connection with the same session_id")
            self._remember(stale)
        position = since if since is not None else self.positions.pop(session_id, None)
        client = Client(self, ws, session_id, since is not None, abort)
        client.start()
        try:
            await self._replay(client, position)
            if position is None:  # what came before this connection was never asked for
                client.outbox.last_seq = self.journal.next_seq - 1
            self.clients[session_id] = client
            await client.receive()
        finally:
            if self.clients.get(session_id) is client:
                del self.clients[session_id]
                self._remember(client)
            client.stop()

    def _remember(self, client: Client) -> None:
        if client.outbox.last_seq:
            self.positions[client.session_id] = client.outbox.last_seq
            self.positions.move_to_end(client.session_id)
            while len(self.positions) > REMEMBERED_SESSIONS:
                self.positions.popitem(last=False)

    async def _replay(self, client: Client, position: int | None) -> None:
        """Feed the client what came after position, then return with it caught up.

        The caller registers the client for live messages right after, with no await in
        between, so nothing is missed and nothing comes twice.
        """
        if position is None:
            return
        journal, seq = self.journal, position + 1
        while seq < journal.next_seq:
            parts = journal.get(seq)
            if parts is None:
                first = journal.first_seq
                log.info("session %s asked from seq %d; the journal starts at %d", client.session_id, seq, first)
                if client.aware:
                    client.notify_gap(seq, first - 1)
                seq = first
                continue
            client.outbox.put(*client.encode_iopub(parts, seq), seq, parts)
            seq += 1
            if client.outbox.overflowed:
                return
            await client.outbox.roomy()

    async def disconnect_all(self, code: int, reason: str) -> None:
        clients = list(self.clients.values())
        self.clients.clear()
        await asyncio.gather(*(c.close(code, reason) for c in clients), return_exceptions=True)

    async def close(self, reason: str) -> None:
        for watcher in list(self.watchers):
            watcher(f"The {reason}.")
        await self.disconnect_all(Close.GOING_AWAY, reason)
        self._task.cancel()
        if self._probe is not None:
            self._probe.cancel()
        self._iopub.close(linger=0)
