"""The command palette (ctrl+p): the app's own commands next to Textual's (themes, keys, quit).

The app says what its commands are (`palette_commands()`); this provider only
matches them against what the user types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

__all__ = ["Command", "MeshCommands"]

Command = tuple[str, str, Callable[[], object]]
"""(title, help, callback)."""


class CommandSource(Protocol):
    def palette_commands(self) -> list[Command]: ...


class MeshCommands(Provider):
    """Open a peer, sort the table, reconnect, ask: whatever the app offers right now."""

    def _commands(self) -> list[Command]:
        return cast(CommandSource, self.app).palette_commands()

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            if (score := matcher.match(title)) > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
