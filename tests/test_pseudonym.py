import pytest

from ccpipe import pseudonym
from ccpipe.crypto import DataKey

K1 = DataKey("tnt-a", "pseudonym", 1, b"a" * 32)
K1_OTHER_TENANT = DataKey("tnt-b", "pseudonym", 1, b"b" * 32)
K2 = DataKey("tnt-a", "pseudonym", 2, b"c" * 32)


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("06 12345678", "nl", "+31612345678"),
        ("+31 6 12345678", "us", "+31612345678"),
        ("(201) 555-0123", "us", "+12015550123"),
        ("07400 123456", "uk", "+447400123456"),
        ("9123 4567", "sg", "+6591234567"),
        ("5123 4567", "hk", "+85251234567"),
        ("0412 345 678", "au", "+61412345678"),
        ("(11) 96123-4567", "br", "+5511961234567"),
    ],
)
def test_phone_e164(value, region, expected):
    assert pseudonym.normalize_phone(value, region) == expected


def test_same_value_same_pseudonym_across_formats():
    a = pseudonym.pseudonymize(K1, "phone", pseudonym.normalize("phone", "06-12345678", "nl"))
    b = pseudonym.pseudonymize(K1, "phone", pseudonym.normalize("phone", "+31 6 1234 5678", "nl"))
    assert a == b and a.startswith("p1_") and len(a) == 3 + 26


def test_email_and_mac_normalization():
    assert pseudonym.normalize("email", " Maria.Lopez@Example.COM ", "nl") == "maria.lopez@example.com"
    assert pseudonym.normalize("mac", "00-1A-2B-3C-4D-5E", "nl") == "00:1a:2b:3c:4d:5e"
    assert pseudonym.normalize("mac", "001a.2b3c.4d5e", "nl") == "00:1a:2b:3c:4d:5e"
    assert pseudonym.normalize("ip", "2001:0db8:0000::0001", "nl") == "2001:db8::1"


def test_keys_tenants_kinds_separate_pseudonyms():
    value = "maria@example.com"
    base = pseudonym.pseudonymize(K1, "email", value)
    assert base != pseudonym.pseudonymize(K1_OTHER_TENANT, "email", value)
    assert base != pseudonym.pseudonymize(K2, "email", value)
    assert base != pseudonym.pseudonymize(K1, "username", value)
    assert pseudonym.pseudonymize(K2, "email", value).startswith("p2_")


def test_ip_truncation():
    assert pseudonym.truncate_ip("192.168.10.37") == "192.168.10.0/24"
    assert pseudonym.truncate_ip("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert pseudonym.truncate_ip("not an ip") is None
