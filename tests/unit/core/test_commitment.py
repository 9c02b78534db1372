"""Leaf commitments: the byte layout documented in docs/proof-format.md."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.core.commitment import check_agency, check_record_id, content_sha256, leaf_data, record_leaf_hash
from pipelines.errors import InputError


def test_leaf_bytes_follow_the_documented_layout():
    digest = hashlib.sha256(b'{"amount":1250.5,"case":"A-17","filed":"2026-11-02"}').digest()
    salt = bytes(range(32))
    by_hand = (
        b"\x00\x11" + b"anchorpipe.leaf/1"
        + b"\x00\x0f" + b"dept-of-records"
        + b"\x00\x10" + b"permit/2026/0001"
        + digest + salt
    )
    assert leaf_data("dept-of-records", "permit/2026/0001", digest, salt) == by_hand
    assert record_leaf_hash("dept-of-records", "permit/2026/0001", digest, salt) == hashlib.sha256(
        b"\x00" + by_hand
    ).digest()


def test_content_is_hashed_over_rfc8785_canonical_bytes():
    a = content_sha256({"filed": "2026-11-02", "case": "A-17", "amount": 1250.5})
    b = content_sha256({"amount": 1250.50, "case": "A-17", "filed": "2026-11-02"})
    assert a == b == hashlib.sha256(b'{"amount":1250.5,"case":"A-17","filed":"2026-11-02"}').digest()
    assert content_sha256({"amount": 1250.51}) != content_sha256({"amount": 1250.5})


def test_length_prefixes_keep_fields_apart():
    d, s = b"\x01" * 32, b"\x02" * 32
    assert leaf_data("ab", "c", d, s) != leaf_data("a", "bc", d, s)


def test_salt_hides_equal_records():
    d = content_sha256("yes")
    assert record_leaf_hash("a", "1", d, b"\x00" * 32) != record_leaf_hash("a", "1", d, b"\x01" * 32)


@pytest.mark.parametrize("bad", ["", "Dept", "-x", "a" * 64, "a b", "é", 7, None])
def test_bad_agency_names_are_refused(bad):
    with pytest.raises(InputError, match="agency name"):
        check_agency(bad)


@pytest.mark.parametrize("bad", ["", "x" * 257, "é" * 129, "a\nb", "tab\there", 5, "\ud800"])
def test_bad_record_ids_are_refused(bad):
    with pytest.raises(InputError, match="record id"):
        check_record_id(bad)


def test_record_id_limits_are_bytes_not_characters():
    assert check_record_id("é" * 128) == "é" * 128
    assert check_record_id("x" * 256) == "x" * 256


def test_wrong_sized_digest_or_salt_is_refused():
    with pytest.raises(ValueError):
        leaf_data("a", "1", b"\x00" * 31, b"\x00" * 32)
    with pytest.raises(ValueError):
        leaf_data("a", "1", b"\x00" * 32, b"\x00" * 33)


@pytest.mark.parametrize("content,message", [
    (float("nan"), "not finite"), (2**53, "outside"), ({1: "x"}, "not a string"), ({"a": b"x"}, "bytes"),
    ("\ud800", "surrogate"),
])
def test_non_json_content_is_an_input_error(content, message):
    with pytest.raises(InputError, match=message):
        content_sha256(content)
