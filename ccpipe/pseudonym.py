"""Keyed pseudonyms for usage analytics: normalization, HMAC-SHA256, IP truncation.

A pseudonym is ``p<version>_<base32 of HMAC-SHA256(key, kind NUL normalized value)>`` (128 bits),
under the tenant's ``pseudonym`` key. The same value gives the same pseudonym within a tenant
and key version, so analytics can join on it; without the key it cannot be reversed or
recomputed. ``kind`` separates domains, so an email and a username that happen to be equal
do not share a pseudonym.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re

import phonenumbers

from ccpipe.crypto import DataKey

# Default phone region for numbers written without a country code, per service region.
PHONE_REGION = {"nl": "NL", "us": "US", "uk": "GB", "sg": "SG", "hk": "HK", "au": "AU", "br": "BR"}
KINDS = ("phone", "email", "mac", "ip", "agent_id", "username", "name", "display_name")

_MAC_HEX = re.compile(r"[0-9a-fA-F]")


def normalize_phone(value: str, region: str) -> str:
    """E.164 when the number parses (national numbers in the tenant's region), else ``+`` and digits."""
    try:
        number = phonenumbers.parse(value, PHONE_REGION.get(region, "US"))
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        pass
    digits = re.sub(r"\D", "", value)
    return ("+" if value.strip().startswith("+") else "") + digits


def normalize_mac(value: str) -> str:
    """Lower-case, colon-separated: ``00:1a:2b:3c:4d:5e`` from any of the usual notations."""
    hexdigits = "".join(_MAC_HEX.findall(value)).lower()
    if len(hexdigits) != 12:
        return value.strip().lower()
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def normalize_ip(value: str) -> str:
    """The canonical text form (compressed IPv6); unparseable values are only stripped."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value.strip().lower()


def normalize(kind: str, value: str, region: str) -> str:
    """Normalize a value of the given kind before it is pseudonymized."""
    if kind == "phone":
        return normalize_phone(value, region)
    if kind == "mac":
        return normalize_mac(value)
    if kind == "ip":
        return normalize_ip(value)
    if kind in ("email", "username"):
        return value.strip().lower()
    if kind in ("name", "display_name"):
        return " ".join(value.split()).casefold()
    return value.strip()


def pseudonymize(key: DataKey, kind: str, normalized: str) -> str:
    """The keyed pseudonym of an already-normalized value."""
    mac = hmac.new(key.material, kind.encode() + b"\0" + normalized.encode(), hashlib.sha256).digest()
    return f"p{key.version}_" + base64.b32encode(mac[:16]).decode().rstrip("=").lower()


def truncate_ip(value: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of an address; None when it is not an address."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
