"""A webhook's URL is checked before it is stored: only globally routable hosts, compared as DNS reads them (no
address is ever contacted here)."""

from __future__ import annotations

import pytest

from pipelines.stages.webhooks import MAX_URL_BYTES, check_url


@pytest.mark.parametrize("url", [
    "http://100.100.100.200/latest/meta-data",  # carrier-grade NAT space (a cloud's metadata address)
    "http://100.64.0.1/x", "http://127.0.0.1.:8080/x", "http://LOCALHOST./x", "http://Localhost/x",
    "http://[::ffff:127.0.0.1]/x", "http://[fc00::1]/x", "http://192.0.2.10/x", "http://198.18.0.1/x",
    "http://0.0.0.0/x", "http://224.0.0.1/x", "http://127.1/x", "http://xn--/x",
    "http://[64:ff9b::a9fe:a9fe]/x", "http://[2002:a9fe:a9fe::]/x", "http://[::a9fe:a9fe]/x", "http://[fec0::1]/x",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # NAT64, 6to4, IPv4-compatible, site-local, Teredo
    "http://ｅｘａｍｐｌｅ.com/x", "http://example.com:99999/x",  # what the sender's own parser refuses
])
def test_only_globally_routable_hosts_are_accepted(url):
    assert check_url(url, allow_private=False) is not None, url


@pytest.mark.parametrize("url", ["https://hooks.example.com/a", "https://Hooks.Example.COM./a",
                                 "https://bücher.example/a", "http://8.8.8.8:8080/a", "http://[64:ff9b::808:808]/a",
                                 "http://[2001:4860:4860::8888]/a"])
def test_public_hosts_pass_the_filter(url):
    assert check_url(url, allow_private=False) is None


def test_a_long_url_is_refused():
    assert "at most" in check_url("https://example.com/" + "a" * MAX_URL_BYTES, allow_private=True)
