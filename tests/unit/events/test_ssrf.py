"""The SSRF guard: what an endpoint may resolve to (checked at delivery time, after DNS), the
request going to the address checked, and redirects never followed."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, cast

import pytest

from moorage.events import ssrf
from moorage.events.delivery import Deliverer, DeliveryFailed
from moorage.events.endpoints import Endpoint, networks
from moorage.events.port import DueDelivery, EventStore
from tests.events_receiver import Receiver

REFUSED = [
    "127.0.0.1", "127.8.9.10", "::1", "169.254.169.254", "169.254.0.1", "10.0.0.1",
    "172.16.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0", "fd00::1", "fe80::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1",
]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused_unless_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    with pytest.raises(ssrf.AddressRefused):
        ssrf.check([ip], allow_private=False, allowed=())
    assert ssrf.check([ip], allow_private=True, allowed=()) == ip
    assert ssrf.check([ip], False, networks([f"{address}/128" if ":" in address else address]))


def test_public_addresses_pass_and_a_mixed_answer_is_refused_whole() -> None:
    public = ipaddress.ip_address("93.184.216.34")
    assert ssrf.check([public], False, ()) == public
    with pytest.raises(ssrf.AddressRefused):
        ssrf.check([public, ipaddress.ip_address("10.1.2.3")], False, ())
    with pytest.raises(ssrf.AddressRefused):
        ssrf.check([], False, ())


DUE = DueDelivery(seq=1, event_id="e-1", body=b'{"id":"e-1"}', attempts=0)


def deliverer(allow_private: bool = False) -> Deliverer:
    return Deliverer(cast(EventStore, None), [], allow_private=allow_private)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


async def test_a_loopback_endpoint_is_refused_before_connecting(receiver: Receiver) -> None:
    for url in (receiver.url, f"http://localhost:{receiver.port}/hook"):
        with pytest.raises(DeliveryFailed) as refused:
            await deliverer().post(Endpoint("r", url), DUE)
        assert refused.value.outcome == "blocked"
    assert receiver.received == []


async def test_the_metadata_address_and_private_ranges_are_refused() -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]/"):
        with pytest.raises(DeliveryFailed) as refused:
            await deliverer().post(Endpoint("x", url, timeout=2), DUE)
        assert refused.value.outcome == "blocked"


async def test_allowed_by_config_it_is_delivered(receiver: Receiver) -> None:
    await deliverer(allow_private=True).post(Endpoint("r", receiver.url), DUE)
    allowed = Endpoint("r", receiver.url, allow_networks=networks(["127.0.0.0/8"]))
    await deliverer().post(allowed, DUE)
    assert [r.body for r in receiver.received] == [DUE.body, DUE.body]


async def test_a_redirect_is_never_followed(receiver: Receiver) -> None:
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(DeliveryFailed, match="redirect"):
        await deliverer(allow_private=True).post(Endpoint("r", receiver.url), DUE)
    assert len(receiver.received) == 1  # one request, to the endpoint itself


async def test_the_request_goes_to_the_address_that_was_checked(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by the guard: a second lookup (what DNS rebinding exploits)
    would fail here, since the name does not exist."""
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[Any]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(ssrf, "resolve", resolve)
    url = f"http://hooks.example.invalid:{receiver.port}/hook"
    await deliverer(allow_private=True).post(Endpoint("r", url), DUE)
    assert lookups == ["hooks.example.invalid"]
    assert receiver.received[0].headers["host"] == f"hooks.example.invalid:{receiver.port}"
