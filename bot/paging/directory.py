"""Who the responders are and where they can be reached, from the operator's config."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from bot.core.messages import Address


@dataclass(frozen=True, slots=True)
class ResponderEntry:
    """A responder's canonical name and every address they can be paged at."""

    name: str
    addresses: tuple[Address, ...]


class Directory:
    """Responders by name (case-insensitive) and by address, limited to active channels."""

    def __init__(self, responders: Iterable[ResponderEntry], active_channels: Collection[str]):
        self._by_name = {r.name.casefold(): r for r in responders}
        self._by_address = {a: r.name for r in self._by_name.values() for a in r.addresses}
        self.active_channels = frozenset(active_channels)

    def names(self) -> list[str]:
        """Return every responder's canonical name, in config order."""
        return [r.name for r in self._by_name.values()]

    def canonical(self, name: str) -> str | None:
        """Return the configured spelling of ``name``, or None if nobody has that name."""
        entry = self._by_name.get(name.casefold())
        return None if entry is None else entry.name

    def responder_at(self, address: Address) -> str | None:
        """Return the name of the responder who writes from ``address``, if it is one."""
        return self._by_address.get(address)

    def reachable_addresses(self, name: str) -> tuple[Address, ...]:
        """Return the addresses of ``name`` on channels running in this process."""
        entry = self._by_name.get(name.casefold())
        if entry is None:
            return ()
        return tuple(a for a in entry.addresses if a.channel in self.active_channels)

    def reachable(self, name: str) -> bool:
        """Return True when ``name`` can be paged by at least one running channel."""
        return bool(self.reachable_addresses(name))
