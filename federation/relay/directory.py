"""The relay's directory of signed cards, in SQLite by default or a shared database.

Several relays may point `--db` at one Postgres: each writes the cards of the
peers tunnelled to it, stamped with its public URL, and refreshes `seen_at`
every `RELAY_PRESENCE_SECONDS` (re-writing their cards, so an emptied or
returning database catches up); every relay's `/peers` then lists the whole
mesh. A relay that dies stops refreshing, so its rows age out after three
periods instead of lingering. Database work runs in a worker thread, and a
database outage costs the directory, never a tunnel: errors are logged and
the relay goes on forwarding.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Engine, MetaData
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, select, update

from federation.card import PeerCard
from federation.const import RELAY_PRESENCE_SECONDS
from federation.database import open_engine
from federation.errors import ConfigError
from federation.relay.received import ReceivedCard

__all__ = ["Directory", "Listing"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class _RelayTables(SQLModel):
    metadata = MetaData()  # kept apart from a peer's tables: a relay's database holds only these


class RelayedCard(_RelayTables, table=True):
    """The last card a peer published through a relay sharing this database."""

    __tablename__ = "relayed_card"

    peer_id: str = Field(primary_key=True)
    mesh: str | None = Field(default=None, index=True)
    card: str = Field(description="the signed card, JSON, as its peer sent it")
    relay_url: str = Field(description="public URL of the relay holding the peer's tunnel")
    online: bool = True
    seen_at: float = Field(index=True)


Listing = tuple[ReceivedCard, str]
"""A card and the public URL of the relay that holds its peer's tunnel."""


class Directory:
    """Card rows of one relay (and its siblings sharing the database)."""

    def __init__(self, url: str, relay_url: str) -> None:
        self.relay_url = relay_url
        try:
            self._engine: Engine = open_engine(url)
            _RelayTables.metadata.create_all(self._engine)
        except (SQLAlchemyError, ImportError) as exc:
            raise ConfigError(f"cannot open the relay database {url!r}: {exc}") from exc

    def close(self) -> None:
        self._engine.dispose()

    async def _run(self, work: Callable[..., _T], *args: object, fallback: _T) -> _T:
        try:
            return await anyio.to_thread.run_sync(work, *args)
        except SQLAlchemyError as exc:
            logger.warning("relay directory unavailable (%s): %s", type(exc).__name__, exc)
            return fallback

    async def publish(self, received: ReceivedCard) -> None:
        await self._run(self._publish, received, fallback=None)

    def _publish(self, received: ReceivedCard) -> None:
        self._publish_all([received])

    def _row(self, received: ReceivedCard) -> RelayedCard:
        card = received.card
        return RelayedCard(peer_id=card.id, mesh=card.mesh, card=json.dumps(received.raw), relay_url=self.relay_url, online=True, seen_at=time.time())

    async def leave(self, peer_id: str) -> None:
        """The peer's tunnel here closed (a sibling may already hold a newer one: leave that alone)."""
        await self._run(self._leave, peer_id, fallback=None)

    def _leave(self, peer_id: str) -> None:
        with Session(self._engine) as session:
            session.exec(update(RelayedCard).where(col(RelayedCard.peer_id) == peer_id, col(RelayedCard.relay_url) == self.relay_url).values(online=False))
            session.commit()

    async def refresh(self, cards: Iterable[ReceivedCard]) -> None:
        """Re-publish the cards of the peers tunnelled here, fresh.

        Written whole rather than just stamped: a database that was down when a
        peer attached (or came back empty) gets every row back within one
        period, while the tunnels went on forwarding throughout.
        """
        listed = list(cards)
        if listed:
            await self._run(self._publish_all, listed, fallback=None)

    def _publish_all(self, cards: list[ReceivedCard]) -> None:
        with Session(self._engine) as session:
            for card in cards:
                session.merge(self._row(card))
            session.commit()

    async def elsewhere(self, mesh: str | None) -> list[Listing]:
        """Cards of peers online on sibling relays (fresh rows only)."""
        return await self._run(self._elsewhere, mesh, fallback=[])

    def _elsewhere(self, mesh: str | None) -> list[Listing]:
        fresh = time.time() - 3 * RELAY_PRESENCE_SECONDS
        query = select(RelayedCard).where(RelayedCard.online, RelayedCard.seen_at > fresh, RelayedCard.relay_url != self.relay_url)
        if mesh is not None:
            query = query.where(RelayedCard.mesh == mesh)
        with Session(self._engine) as session:
            rows = session.exec(query).all()
        return [(_received(row.card), row.relay_url) for row in rows]


def _received(stored: str) -> ReceivedCard:
    """A stored card, kept as stored (the JSON its peer sent) beside what this version reads in it."""
    raw = json.loads(stored)
    return ReceivedCard(PeerCard.model_validate(raw), raw)
