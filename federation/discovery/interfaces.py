"""Where mDNS runs and which addresses a peer advertises, from `--mdns` and `--host`.

A peer bound to one address advertises that address; one bound to 0.0.0.0
(or `::`) is reachable at every address of that family on the machine, so
its card lists them all (`advertised_hosts`), LAN addresses first and
loopback last, never the unspecified address itself, which no one can dial.

`--mdns auto` follows the bind address: a peer bound to loopback (the
default) announces on loopback only, since no other host could reach it
anyway; a peer bound to a LAN address announces on that address's interface;
a peer bound to 0.0.0.0 announces on every IPv4 interface. `--mdns off` turns
mDNS off; `--mdns eth1,192.168.1.5` names interfaces or addresses.

When every chosen address sits on one device (loopback, or one LAN
interface), the plan names that device so mDNS can be confined to it:
zeroconf's one wildcard socket otherwise hears, and answers, what arrives
on any interface (see `mdns.py`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import ifaddr
from zeroconf import InterfaceChoice

from federation.errors import ConfigError
from federation.settings import PeerSettings, is_loopback

__all__ = ["MdnsPlan", "advertised_hosts", "plan_mdns"]


@dataclass(frozen=True)
class MdnsPlan:
    """The zeroconf `interfaces` argument, the IPv4 addresses to put in A records, and their one device if they share one."""

    interfaces: list[str] | InterfaceChoice
    addresses: list[str]
    device: str | None = None


def _ipv4_by_adapter() -> dict[str, list[str]]:
    return {
        adapter.name: [ip.ip for ip in adapter.ips if isinstance(ip.ip, str)]
        for adapter in ifaddr.get_adapters()
    }


def advertised_hosts(host: str) -> list[str]:
    """The addresses a peer listening on `host` is reached at; see the module docstring."""
    try:
        bound = ipaddress.ip_address(host)
    except ValueError:
        return [host]  # a name, e.g. localhost
    if not bound.is_unspecified:
        return [host]
    found = [ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0]) for adapter in ifaddr.get_adapters() for ip in adapter.ips]
    # IPv6 link-local addresses need an interface scope to be dialled, which a URL cannot carry portably.
    usable = [address for address in found if address.version == bound.version and not (address.version == 6 and address.is_link_local)]
    loopback = [str(address) for address in usable if address.is_loopback] or ["127.0.0.1" if bound.version == 4 else "::1"]
    return list(dict.fromkeys([str(address) for address in usable if not address.is_loopback] + loopback))


def _one_device(addresses: list[str]) -> str | None:
    """The network device holding every one of `addresses`; None when they span several or one is not local."""
    owners = {address: name for name, owned in _ipv4_by_adapter().items() for address in owned}
    devices = {owners.get(address) for address in addresses}
    return devices.pop() if len(devices) == 1 else None


def _named(items: list[str]) -> list[str]:
    """IPv4 addresses for a list of interface names and IPv4 literals."""
    adapters = _ipv4_by_adapter()
    chosen: list[str] = []
    for item in items:
        try:
            address = ipaddress.ip_address(item)
        except ValueError:
            if item not in adapters:
                raise ConfigError(f"--mdns names interface {item!r}, which this machine does not have; it has: {', '.join(sorted(adapters))}.") from None
            if not adapters[item]:
                raise ConfigError(f"interface {item!r} has no IPv4 address, and mDNS here speaks IPv4 only.") from None
            chosen += adapters[item]
            continue
        if address.version != 4:
            raise ConfigError(f"--mdns {item}: only IPv4 addresses are supported for mDNS; use --peer URL for IPv6 peers.")
        chosen.append(item)
    return list(dict.fromkeys(chosen))


def plan_mdns(settings: PeerSettings) -> MdnsPlan | None:
    """Where to run mDNS for these settings; None when it is off. Raises `ConfigError` on a bad choice."""
    choice = settings.mdns.strip()
    if choice.lower() == "off":
        return None
    host = "127.0.0.1" if settings.host == "localhost" else settings.host
    try:
        bound = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"--host {settings.host!r} is not an IP address, so --mdns auto cannot follow it; pass --mdns IFACE or --mdns off.") from None
    if bound.version != 4:
        raise ConfigError(f"mDNS here speaks IPv4 only and this peer binds {host}; pass --mdns off and --peer URL.")
    if choice.lower() != "auto":
        interfaces = _named([item.strip() for item in choice.split(",") if item.strip()])
        if not interfaces:
            raise ConfigError("--mdns takes 'auto', 'off' or a comma list of interfaces or IPv4 addresses.")
        if is_loopback(host) and any(not is_loopback(address) for address in interfaces):
            raise ConfigError(
                f"--mdns {choice} would announce this peer to the network, but it listens on {host} only; "
                "bind a LAN address with --host (needs a mesh secret) or leave --mdns auto."
            )
        return MdnsPlan(interfaces, interfaces if bound.is_unspecified else [host], _one_device(interfaces))
    if bound.is_unspecified:
        everywhere = [a for addresses in _ipv4_by_adapter().values() for a in addresses if not is_loopback(a)]
        return MdnsPlan(InterfaceChoice.All, everywhere or ["127.0.0.1"])
    return MdnsPlan([host], [host], _one_device([host]))
