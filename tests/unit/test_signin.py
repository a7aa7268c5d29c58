"""The console's sign-in lock grows with every further wrong guess and is forgotten after a quiet
hour; a forwarded client address is believed only from a proxy the shop trusts."""

from __future__ import annotations

import ipaddress
from unittest.mock import Mock

import pytest
from aiohttp.test_utils import make_mocked_request

from bot.config import ConfigError, load_settings
from bot.security import came_over_https, client_address
from handoff.signin import FIRST_LOCK_SECONDS, MAX_LOCK_SECONDS, SignInKey, SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lock_starts_at_the_fifth_wrong_guess_and_doubles() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock)
    key = SignInKey("bob", "203.0.113.5")
    assert [throttle.failed(key) for _ in range(4)] == [0.0] * 4
    assert throttle.retry_after(key) == 0
    assert throttle.failed(key) == FIRST_LOCK_SECONDS
    assert throttle.retry_after(key) == FIRST_LOCK_SECONDS
    clock.now += FIRST_LOCK_SECONDS
    assert throttle.retry_after(key) == 0
    assert throttle.failed(key) == 2 * FIRST_LOCK_SECONDS  # one more guess: twice as long
    assert throttle.failed(key) == 4 * FIRST_LOCK_SECONDS
    for _ in range(10):
        lock = throttle.failed(key)
    assert lock == MAX_LOCK_SECONDS


def test_other_accounts_and_addresses_are_not_locked_and_success_clears() -> None:
    throttle = SignInThrottle(Clock())
    bob = SignInKey("bob", "10.0.0.1")
    for _ in range(5):
        throttle.failed(bob)
    assert throttle.retry_after(bob) > 0
    assert throttle.retry_after(SignInKey("alice", "10.0.0.1")) == 0
    assert throttle.retry_after(SignInKey("bob", "10.0.0.2")) == 0
    carol = SignInKey("carol", "10.0.0.1")
    for _ in range(4):
        throttle.failed(carol)
    throttle.succeeded(carol)
    assert throttle.failed(carol) == 0.0  # the count started again


def test_a_quiet_hour_forgets_and_memory_stays_bounded() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock)
    key = SignInKey("bob", "10.0.0.1")
    for _ in range(4):
        throttle.failed(key)
    clock.now += 3601
    assert throttle.failed(key) == 0.0
    for n in range(20_000):
        throttle.failed(SignInKey(f"spray{n}", "10.0.0.9"))
    assert len(throttle._failures) <= 10_000


PROXY = (ipaddress.ip_network("10.0.0.0/8"),)


def test_forwarded_address_only_from_a_trusted_proxy() -> None:
    def req(headers: dict[str, str], peer: str) -> object:
        transport = Mock()
        transport.get_extra_info = lambda name, default=None: (peer, 1234) if name == "peername" else default
        return make_mocked_request("POST", "/console/login", headers=headers, transport=transport)

    forwarded = {"X-Forwarded-For": "198.51.100.7, 203.0.113.5, 10.0.0.3", "X-Forwarded-Proto": "https"}
    assert client_address(req(forwarded, "10.0.0.2"), PROXY) == "203.0.113.5"  # nearest untrusted hop
    assert came_over_https(req(forwarded, "10.0.0.2"), PROXY)
    assert client_address(req(forwarded, "192.0.2.1"), PROXY) == "192.0.2.1"  # the client cannot pick its address
    assert not came_over_https(req(forwarded, "192.0.2.1"), PROXY)
    assert client_address(req(forwarded, "10.0.0.2"), ()) == "10.0.0.2"  # nothing trusted by default


def test_trusted_proxies_setting_is_validated() -> None:
    settings = load_settings({"TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}, dotenv=None)
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        load_settings({"TRUSTED_PROXIES": "the-proxy"}, dotenv=None)


def test_a_username_spray_does_not_evict_a_lock() -> None:
    throttle = SignInThrottle(Clock())
    bob = SignInKey("bob", "10.0.0.1")
    for _ in range(5):
        throttle.failed(bob)
    for n in range(30_000):
        throttle.failed(SignInKey(f"spray{n}", "10.0.0.9"))
    assert throttle.retry_after(bob) > 0
