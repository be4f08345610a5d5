"""mDNS: advertise this peer on the LAN and admit the peers it hears about.

Advertising: one `_mcp-fed._tcp.local.` instance named `<name>-<id8>` with the
TXT hint (`hint.txt_record`), registered with `cooperating_responders=True`:
the instance name carries the peer id, so there is nothing to probe for, and
another peer sees it ~1 ms after registration instead of ~1.2 s. The TXT is
re-announced when the card digest changes; a clean stop sends goodbyes.

Browsing: the browser's callback only files the instance name; a fixed pool
of workers resolves each instance, reads its hint, and (unless the hint is
ours, another mesh's, or unchanged) fetches and verifies the card before
`peers.admit(card, "mdns", url)`. Everything is bounded so a flood of
announcements costs bounded memory and work: at most
`DISCOVERY_MAX_INSTANCES` instances tracked (not-admitted ones evicted
first), `DISCOVERY_QUEUE_LIMIT` waiting, `DISCOVERY_WORKERS` fetches at once,
each with a deadline. Unreachable or slow instances are retried with backoff;
rejected ones only when their TXT changes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from zeroconf import DNSOutgoing, DNSQuestion, IPVersion, ServiceStateChange, Zeroconf, current_time_millis
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
from zeroconf.const import _CLASS_IN, _FLAGS_QR_QUERY, _TYPE_PTR

from federation.card import PeerCard
from federation.const import (
    DISCOVERY_MAX_INSTANCES,
    DISCOVERY_QUEUE_LIMIT,
    DISCOVERY_RETRY_SECONDS,
    DISCOVERY_WORKERS,
    MCP_PATH,
    MDNS_REQUERY_SECONDS,
    MDNS_RESOLVE_TIMEOUT_MS,
    PROTOCOL_VERSION,
    SERVICE_TYPE,
)
from federation.discovery.admission import Member, Rejected, RejectionLog, discovery_client, fetch_card
from federation.discovery.hint import Hint, HintError, mesh_tag, parse_hint, txt_record
from federation.discovery.interfaces import MdnsPlan
from federation.http1 import ConnectionPool
from federation.peers import PeerTable

__all__ = ["MdnsDiscovery", "instance_name", "mdns_discovery"]

logger = logging.getLogger(__name__)

_CLOSE_SECONDS = 2.0
_SWEEP_SECONDS = 0.5
_CARD_WATCH_SECONDS = 1.0
_LABEL_BYTES = 63  # DNS label limit for the instance name
_RECEIVE_BUFFER_BYTES = 2 * 1024 * 1024  # Linux doubles it (bookkeeping) and caps it at net.core.rmem_max


def instance_name(name: str, peer_id: str) -> str:
    """`<name>-<id8>`, the name cut (on a character boundary) to fit one DNS label."""
    suffix = f"-{peer_id[:8]}"
    room = _LABEL_BYTES - len(suffix)
    cut = name.encode("utf-8")[:room].decode("utf-8", "ignore").replace(".", "_") or "peer"
    return cut + suffix


@dataclass
class _Instance:
    """What we know of one announced instance."""

    added: float = field(default_factory=time.monotonic)
    peer_id: str | None = None  # set once admitted
    url: str | None = None
    settled: tuple[str, tuple[str, ...]] | None = None  # (digest, urls) already handled
    failures: int = 0
    retry_at: float | None = None

    @property
    def admitted(self) -> bool:
        return self.peer_id is not None


class MdnsDiscovery:
    """Advertise + browse + admit over one `AsyncZeroconf`; see the module docstring.

    Handed what it uses: this peer's name, id and port, its signed `card` as it
    is now, its mesh and proof (`member`), the peer table it admits into.
    """

    def __init__(
        self,
        zc: AsyncZeroconf,
        http: ConnectionPool,
        plan: MdnsPlan,
        *,
        name: str,
        peer_id: str,
        port: int,
        card: Callable[[], PeerCard],
        mesh: str | None,
        member: Member | None,
        peers: PeerTable,
    ) -> None:
        self._zc = zc
        self._http = http
        self._plan = plan
        self._name = name
        self._peer_id = peer_id
        self._port = port
        self._card = card
        self._mesh = mesh
        self._member = member
        self._peers = peers
        self._mesh_tag = mesh_tag(mesh)
        self._instances: dict[str, _Instance] = {}
        self._queued: set[str] = set()
        self._send: MemoryObjectSendStream[str]
        self._receive: MemoryObjectReceiveStream[str]
        self._send, self._receive = anyio.create_memory_object_stream[str](DISCOVERY_QUEUE_LIMIT)
        self.rejections = RejectionLog(name)
        self._info: AsyncServiceInfo | None = None
        self._broadcast: Awaitable[object] | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._browsing_since: float | None = None
        self._examining = 0

    @property
    def tracked(self) -> int:
        """Instances currently tracked (bounded by `DISCOVERY_MAX_INSTANCES`)."""
        return len(self._instances)

    def settled(self, settle_seconds: float) -> bool:
        """Browsing for `settle_seconds` and every instance heard of so far looked at once (admitted or not)."""
        if self._browsing_since is None or time.monotonic() - self._browsing_since < settle_seconds:
            return False
        return not self._queued and self._examining == 0

    # -- advertising -------------------------------------------------------
    def _service_info(self) -> AsyncServiceInfo:
        name = instance_name(self._name, self._peer_id)
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(address) for address in self._plan.addresses],
            port=self._port,
            properties=txt_record(self._card(), MCP_PATH),
            server=f"mcpfed-{self._peer_id}.local.",
        )

    async def advertise(self) -> None:
        self._info = self._service_info()
        self._broadcast = await self._zc.async_register_service(self._info, cooperating_responders=True)

    async def _watch_card(self) -> None:
        """Re-announce when the card digest changes (tools or models changed)."""
        while True:
            await anyio.sleep(_CARD_WATCH_SECONDS)
            fresh = self._service_info()
            if self._info is not None and fresh.properties != self._info.properties:
                self._info = fresh
                self._broadcast = await self._zc.async_update_service(fresh)

    async def leave(self) -> None:
        """Send the goodbye now, first thing when the node stops: peers stop routing here at once.

        The stop then answers the calls still in flight, which can take
        seconds; the records must not outlive the decision to leave.
        """
        info, self._info = self._info, None  # the card watcher re-announces nothing from now on
        if isinstance(self._broadcast, asyncio.Future):
            # zeroconf repeats an announcement in a background task for a second or so; one
            # still running would re-add the records after the goodbye (browsers saw the peer return)
            self._broadcast.cancel()
        for delayed in (self._zc.zeroconf.out_queue, self._zc.zeroconf.out_delay_queue):
            # so would answers to queries heard just before, which zeroconf holds back up to 1.5 s to aggregate
            delayed.queue.clear()
        if info is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_SECONDS):
                sent = await self._zc.async_unregister_service(info)
                await sent  # the goodbye packets went out

    # -- browsing ----------------------------------------------------------
    def browse(self, task_group: TaskGroup) -> None:
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])
        self._ask_everyone()
        self._browsing_since = time.monotonic()
        for _ in range(DISCOVERY_WORKERS):
            task_group.start_soon(self._work)
        task_group.start_soon(self._sweep)
        task_group.start_soon(self._watch_card)
        task_group.start_soon(self._requery)

    def _ask_everyone(self) -> None:
        """One query whose answers come by multicast, sent as browsing starts.

        zeroconf's own first query asks for unicast answers, which reach only one
        of the sockets sharing port 5353 (avahi's, another peer's), often not
        ours; its next query goes ~1 s later, and a peer that has just multicast
        (to that first query) delays its answer by another second. Measured on
        loopback: peers appeared 1.1-2.1 s after browsing began, ~0.1 s with this.
        """
        query = DNSOutgoing(_FLAGS_QR_QUERY)
        query.add_question(DNSQuestion(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN))
        if self._info is not None:  # our own record as a known answer: our responder must not re-announce us now
            query.add_answer_at_time(self._info.dns_pointer(), 0)
        self._zc.zeroconf.async_send(query)

    async def _requery(self) -> None:
        """Ask again every `MDNS_REQUERY_SECONDS`, listing the instances we know.

        zeroconf's browser sends four queries at start-up, then only refreshes
        known records near expiry (~an hour). A lost answer (a busy host, Wi-Fi)
        would hide a peer that long; a periodic query with the known answers
        attached costs one small packet, and only the peers we miss reply.
        """
        while True:
            await anyio.sleep(MDNS_REQUERY_SECONDS)
            if self._browser is not None:
                self._browser.query_scheduler.async_send_ready_queries(False, current_time_millis(), {SERVICE_TYPE})

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        """zeroconf's callback (on the event loop): file the news, never do slow work here."""
        if state_change is ServiceStateChange.Removed:
            self._gone(name)
            return
        if name not in self._instances and not self._make_room(name):
            return
        self._instances.setdefault(name, _Instance())
        self._enqueue(name)

    def _make_room(self, name: str) -> bool:
        if len(self._instances) < DISCOVERY_MAX_INSTANCES:
            return True
        evictable = [key for key, inst in self._instances.items() if not inst.admitted]
        if not evictable:
            self.rejections.report("mdns", "too-many", f"tracking {len(self._instances)} admitted instances already; ignoring {name}")
            return False
        oldest = min(evictable, key=lambda key: self._instances[key].added)
        del self._instances[oldest]
        self.rejections.report("mdns", "flood", f"more than {DISCOVERY_MAX_INSTANCES} instances announced; forgetting the oldest unadmitted ones")
        return True

    def _enqueue(self, name: str) -> None:
        if name in self._queued:
            return
        try:
            self._send.send_nowait(name)
        except anyio.WouldBlock:
            self._schedule_retry(name, self._instances[name])
            self.rejections.report("mdns", "busy", f"more than {DISCOVERY_QUEUE_LIMIT} announcements waiting; later ones are retried")
            return
        self._queued.add(name)

    def _gone(self, name: str) -> None:
        """An mDNS goodbye (or TTL expiry): the peer left, if it was admitted from this instance."""
        inst = self._instances.pop(name, None)
        self.rejections.forget(name)
        if inst is None or inst.peer_id is None:
            return
        peer = self._peers.get(inst.peer_id)
        if peer is not None and peer.routes.get("mdns") == inst.url:
            self._peers.drop_route(inst.peer_id, "mdns")

    def _schedule_retry(self, name: str, inst: _Instance) -> None:
        first, cap = DISCOVERY_RETRY_SECONDS
        inst.retry_at = time.monotonic() + min(cap, first * 2**inst.failures)
        inst.failures += 1

    async def _sweep(self) -> None:
        """Re-queue instances whose retry is due, and admitted ones whose peer was forgotten."""
        while True:
            await anyio.sleep(_SWEEP_SECONDS)
            now = time.monotonic()
            for name, inst in list(self._instances.items()):
                if inst.admitted and inst.peer_id not in self._peers:
                    inst.peer_id, inst.settled = None, None
                    self._schedule_retry(name, inst)
                elif inst.retry_at is not None and inst.retry_at <= now:
                    inst.retry_at = None
                    inst.settled = None
                    self._enqueue(name)

    async def _work(self) -> None:
        async for name in self._receive:
            self._queued.discard(name)
            inst = self._instances.get(name)
            if inst is None:
                continue
            self._examining += 1
            try:
                await self._examine(name, inst)
            except Rejected as rejected:
                self.rejections.report(name, rejected.reason, str(rejected))
                if rejected.retry:
                    self._schedule_retry(name, inst)
            except Exception as exc:  # noqa: BLE001 - one odd announcement must never stop discovery
                self.rejections.report(name, "error", f"{exc.__class__.__name__}: {exc}", level=logging.ERROR)
            finally:
                self._examining -= 1

    async def _resolve(self, name: str) -> Hint | None:
        """The instance's hint; None when it is not for us (another mesh, whatever else it says)."""
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zc.zeroconf, MDNS_RESOLVE_TIMEOUT_MS):
            raise Rejected("unresolved", f"no SRV/TXT/A records for {name} within {MDNS_RESOLVE_TIMEOUT_MS} ms", retry=True)
        if (info.properties or {}).get(b"mesh") != self._mesh_tag.encode("ascii"):
            return None
        try:
            return parse_hint(info)
        except HintError as exc:
            raise Rejected("malformed-txt", str(exc)) from exc

    async def _examine(self, name: str, inst: _Instance) -> None:
        """Resolve, read the hint, and admit the peer if its card checks out."""
        hint = await self._resolve(name)
        if hint is None or hint.peer_id == self._peer_id:
            return  # a neighbour in another mesh, or ourselves: nothing to fetch
        if not hint.compatible:
            raise Rejected("protocol", f"speaks protocol v{hint.version}; this peer speaks v{PROTOCOL_VERSION}")
        state = (hint.digest, hint.urls)
        peer = self._peers.get(hint.peer_id)
        if inst.settled == state and (not inst.admitted or (peer is not None and peer.routes.get("mdns") == inst.url)):
            return  # nothing changed since we last looked: no refetch
        inst.settled = state
        failures: list[Rejected] = []
        for url in hint.urls:
            try:
                card = await fetch_card(self._http, url, mesh=self._mesh, member=self._member, expected_id=hint.peer_id, check_address=True)
            except Rejected as rejected:
                failures.append(rejected)
                continue
            self._peers.admit(card, "mdns", url)
            inst.peer_id, inst.url, inst.failures, inst.retry_at = card.id, url, 0, None
            self.rejections.forget(name)
            return
        # A verification failure says more than "unreachable": report it, and do not retry it.
        worst = next((f for f in failures if not f.retry), failures[-1])
        if worst.retry:
            inst.settled = None
        raise worst

    async def aclose(self) -> None:
        """Stop browsing, send goodbyes, close the sockets (bounded, even when cancelled)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_SECONDS):
            if self._browser is not None:
                await self._browser.async_cancel()
            await self._zc.async_close()
        self._send.close()
        self._receive.close()


def _absorb_bursts(zc: AsyncZeroconf) -> None:
    """Give zeroconf's receiving sockets room for a start-up burst (`_RECEIVE_BUFFER_BYTES`, capped by the kernel).

    When many peers start at once every one of them queries and every other
    answers, each datagram reaching every socket on the group: ~N² datagrams
    per socket in a few seconds, while its process is busy starting too. The
    default buffer (~208 KB) overflowed: 13,500 datagrams dropped in the first
    10 s of a 100-peer start on loopback, and a dropped answer hides a peer
    until the next query (`MDNS_REQUERY_SECONDS`). Memory is taken only while
    datagrams wait, so a quiet peer pays nothing for it.
    """
    engine = zc.zeroconf.engine
    for sock in {engine._listen_socket, *engine._respond_sockets}:
        if sock is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER_BYTES)
        except OSError as exc:  # refused: the default buffer still works, with more loss in a burst
            logger.debug("could not widen an mDNS receive buffer: %s", exc)


def _hear_only_on(zc: AsyncZeroconf, device: str) -> None:
    """Make zeroconf's receiving socket take packets from `device` only.

    zeroconf receives on one wildcard socket (0.0.0.0:5353) and joins the
    multicast group on the chosen interfaces. Linux hands a multicast datagram
    to every socket on that port once *any* socket joined the group on the
    interface it came in by, and zeroconf answers a question that asks for a
    unicast reply straight to the asker, from that socket. So a peer on
    loopback answered the LAN as soon as another process on the machine
    listened on all interfaces. Bound to its device, the socket never sees
    what arrives elsewhere. (zeroconf offers no option for this; its engine
    keeps the socket as `_listen_socket`, which a netns test pins.)
    """
    listen = zc.zeroconf.engine._listen_socket
    if listen is None:
        return
    try:
        listen.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    except (AttributeError, OSError) as exc:  # no SO_BINDTODEVICE (not Linux), or refused
        logger.warning("cannot confine mDNS to %s (%s): queries arriving on other interfaces may be answered", device, exc)


@asynccontextmanager
async def mdns_discovery(
    plan: MdnsPlan | None,
    *,
    name: str,
    peer_id: str,
    port: int,
    card: Callable[[], PeerCard],
    mesh: str | None,
    member: Member | None,
    peers: PeerTable,
) -> AsyncIterator[MdnsDiscovery | None]:
    """Node service: run mDNS per `plan` (`plan_mdns(settings)`) for the node's lifetime (nothing when None: 'off')."""
    if plan is None:
        yield None
        return
    zc = AsyncZeroconf(interfaces=plan.interfaces, ip_version=IPVersion.V4Only)
    _absorb_bursts(zc)
    if plan.device is not None:
        _hear_only_on(zc, plan.device)
    async with discovery_client() as http:
        discovery = MdnsDiscovery(zc, http, plan, name=name, peer_id=peer_id, port=port, card=card, mesh=mesh, member=member, peers=peers)
        try:
            async with anyio.create_task_group() as task_group:
                await discovery.advertise()
                discovery.browse(task_group)
                yield discovery
                task_group.cancel_scope.cancel()
        finally:
            await discovery.aclose()
