"""Where mDNS runs follows `--host` and `--mdns`; a wrong choice is a clear error before anything starts."""

from __future__ import annotations

import ifaddr
import pytest

from federation.discovery.interfaces import advertised_hosts, plan_mdns
from federation.errors import ConfigError
from federation.node import Node
from federation.settings import PeerSettings


def _ipv4_by_adapter() -> dict[str, list[str]]:
    return {adapter.name: [ip.ip for ip in adapter.ips if isinstance(ip.ip, str)] for adapter in ifaddr.get_adapters()}


def test_loopback_peer_announces_on_loopback_only() -> None:
    plan = plan_mdns(PeerSettings(mdns="auto"))
    assert plan is not None and (plan.interfaces, plan.addresses) == (["127.0.0.1"], ["127.0.0.1"])
    assert plan.device == next(name for name, addresses in _ipv4_by_adapter().items() if "127.0.0.1" in addresses), "mDNS is confined to the loopback device"


def test_a_peer_bound_everywhere_advertises_each_address_of_the_machine_never_0_0_0_0() -> None:
    lan = [address for addresses in _ipv4_by_adapter().values() for address in addresses if not address.startswith("127.")]
    assert advertised_hosts("0.0.0.0") == [*dict.fromkeys(lan), "127.0.0.1"]
    assert advertised_hosts("10.77.0.9") == ["10.77.0.9"] and advertised_hosts("localhost") == ["localhost"]


def test_lan_bound_peer_announces_on_its_own_address() -> None:
    plan = plan_mdns(PeerSettings(host="10.77.0.9", mesh_secret="s", mdns="auto"))
    assert plan is not None and (plan.interfaces, plan.addresses) == (["10.77.0.9"], ["10.77.0.9"])


def test_off_means_no_mdns() -> None:
    assert plan_mdns(PeerSettings(mdns="off")) is None


def test_interface_names_resolve_to_their_addresses() -> None:
    plan = plan_mdns(PeerSettings(mdns="lo"))
    assert plan is not None and plan.interfaces == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"mdns": "nosuch0"}, "does not have"),
        ({"mdns": "10.1.2.3"}, "listens on 127.0.0.1 only"),
        ({"mdns": "::1"}, "only IPv4"),
        ({"host": "::1"}, "IPv4 only"),
        ({"host": "myhost.lan", "mesh_secret": "s"}, "not an IP address"),
        ({"mdns": " , "}, "comma list"),
    ],
)
def test_bad_mdns_choices_are_refused_before_the_node_binds(overrides: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        Node(PeerSettings(model=None, **overrides))


def test_a_static_peer_must_be_a_url() -> None:
    with pytest.raises(ConfigError, match="not a peer URL"):
        PeerSettings(peers=["192.168.1.5:8801"])
