"""Dead letters before they are sealed: secrets out, and the key that seals them (Beam-free).

SPEC §3: secrets (passwords, PINs/DTMF, card numbers) are removed or hashed before a dead letter is
sealed, and a known tenant's dead letters are sealed under that tenant's key, so that shredding the
tenant (and deleting its data) reaches them.

``scrub(raw, key)`` replaces each secret in a raw input line with ``[redacted:KIND:MAC]``: MAC is a
keyed hash (HMAC-SHA256 under a subkey of the sealing key, 64 bits) that tells two secrets apart without
revealing them, so that the same line always scrubs the same way under the same key (dead-letter ids
stay stable) and two lines that differ only in a secret do not collide. It works on the raw text, so
it also scrubs lines that are not valid JSON or not valid UTF-8, and keeps every other byte as it
was. What it removes:

* the value of every key that names a secret, at any depth: ``password``, ``pin``, ``dtmf_digits``,
  ``cvv``, ``card_number``, ``secret``, ``token``, ... (quoted, single-quoted or bare keys);
* in every text: card numbers (Luhn-valid 13-19 digits, or grouped 4-4-4-4), digits after a PIN /
  passcode / code / DTMF word, keypad digits ending in ``#``, runs of four or more spoken digits, and
  the word after "password is" / "password:".

``seal(dead, region, store, known_tenants)`` picks the key (``sealing_owner``) and seals the scrubbed
line. When a known tenant's key is unavailable (shredded, or cannot be unwrapped) the line is
*withheld*: only a marker with a keyed digest of the line is sealed, under the region's dead-letter
key. Sealing a shredded tenant's data under the operator's key would undo the shred; the record is
still counted as dead-lettered (reason, step, ids stay), and its input is still at its source.
Anything that fails while scrubbing withholds the line too. Nothing is ever written in plain text:
if the region's dead-letter key is unavailable, ``seal`` raises and the run fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from ccpipe.crypto import DataKey
from ccpipe.errors import KeyUnavailableError
from ccpipe.keystore import deadletter_key_owner
from ccpipe.policy import encrypt_dead_letter
from ccpipe.types import DeadLetter, OutputRow

SEALED_TENANT = "tenant"
SEALED_REGION = "region"
WITHHELD = "withheld"
_SUBKEY_LABEL = b"ccpipe/deadletter-scrub/v1"

# Key names (split into lower-case words) that hold a secret.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "passphrase", "passcode", "pin", "pincode", "dtmf", "cvv", "cvc", "cvv2", "cvc2",
     "secret", "token", "otp", "pan", "iban"}
)
_SECRET_JOINED = ("password", "passwd", "passphrase", "passcode", "dtmf", "cardnumber", "creditcard", "cardno",
                  "securitycode", "apikey", "accesstoken", "pincode", "secret")
_KEY_WORDS = r"(?:pass(?:word|wd|phrase|code)|pwd|pin(?:[ _-]?code)?|dtmf(?:[ _-]?digits)?|cvv2?|cvc2?|secret|" \
             r"(?:access[ _-]?|api[ _-]?)?token|api[ _-]?key|otp|card[ _-]?(?:number|no)|security[ _-]?code)"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\Z)', re.S)
_COLON = re.compile(r"\s*:")
_BARE_VALUE = re.compile(r"[^,}\]\n]*")
_WS = re.compile(r"\s*")
# Outside strings: unquoted or single-quoted secret keys of malformed lines, and bare card numbers.
_LOOSE_KEY = re.compile(
    rf"(?i)(?<![A-Za-z0-9])(['\"]?){_KEY_WORDS}\1\s*[:=]\s*('(?:[^'\\]|\\.)*(?:'|\Z)|[^,}}\]\s]+)"
)
_BARE_CARD = re.compile(r"(?<![\w.+-])\d{13,19}(?![\w.])")
# Inside texts.
_CARD = re.compile(r"(?<![\d.,+-])\d(?:[ .-]?\d){11,18}(?!\d|[.,-]\d)")
_CARD_SHAPE = re.compile(r"\d{4}([ .-])\d{4}\1\d{4}\1\d{3,4}|\d{4}([ -])\d{6}\2\d{4,5}")
_PIN = re.compile(
    r"(?i)(\b(?:pin(?:\s*code)?|passcode|pass\s*code|password|code|security\s*code|cvv2?|cvc2?|dtmf|keypad|"
    r"digits|pressed|entered|press|enter)\b[\s\"'\\]*(?:number\s+)?(?:(?:is|was|are|:|=)[\s\"'\\]*)?)"
    r"([#*]?\d(?:[ -]?[\d#*]){2,15})"
)
_KEYPAD = re.compile(r"(?<![\w#*])[#*]?\d{4,12}[#*](?!\w)")
_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple)"
_SPOKEN = re.compile(rf"(?i)\b{_DIGIT_WORD}(?:[ ,-]+{_DIGIT_WORD}){{3,}}\b")
_PASSWORD_WORD = re.compile(
    r"(?i)(\b(?:password|passwd|passphrase|pwd)\b[\s\"'\\]*(?:is|was|:|=)[\s\"'\\]*)((?:[^\s\"\\]|\\.)+)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_secret_key(name: str) -> bool:
    """True when a field name says its value is a secret (``password``, ``pinCode``, ``dtmf_digits``, ...)."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    if any(w in _SECRET_WORDS for w in words):
        return True
    joined = "".join(words)
    return any(j in joined for j in _SECRET_JOINED)


def _marker_fn(key: DataKey | None) -> Callable[[str, str], str]:
    subkey = hmac.new(key.material, _SUBKEY_LABEL, hashlib.sha256).digest() if key is not None else None

    def marker(kind: str, value: str) -> str:
        if subkey is None:
            return f"[redacted:{kind}]"
        data = (kind + "\0" + value).encode("utf-8", "surrogateescape")
        return f"[redacted:{kind}:{hmac.new(subkey, data, hashlib.sha256).hexdigest()[:16]}]"

    return marker


def _scrub_text(text: str, marker: Callable[[str, str], str]) -> str:
    """Secrets in free text (a JSON string token, quotes included, or a whole unparseable line)."""

    def card(m: re.Match) -> str:
        digits = re.sub(r"\D", "", m.group())
        if (13 <= len(digits) <= 19 and _luhn(digits)) or _CARD_SHAPE.fullmatch(m.group()):
            return marker("card", digits)
        return m.group()

    text = _CARD.sub(card, text)
    text = _PASSWORD_WORD.sub(lambda m: m.group(1) + marker("password", m.group(2)), text)
    text = _PIN.sub(lambda m: m.group(1) + marker("pin", m.group(2)), text)
    text = _KEYPAD.sub(lambda m: marker("pin", m.group()), text)
    return _SPOKEN.sub(lambda m: marker("pin", m.group()), text)


def _scrub_bare(segment: str, marker: Callable[[str, str], str]) -> str:
    """Secrets outside JSON strings: bare or single-quoted secret keys, card numbers as numbers."""

    def loose(m: re.Match) -> str:
        value = m.group(2)
        if value.startswith(('"[redacted:', "[redacted:")):
            return m.group()
        return m.group()[: m.start(2) - m.start()] + json.dumps(marker("secret", value))

    segment = _LOOSE_KEY.sub(loose, segment)
    segment = _BARE_CARD.sub(lambda m: json.dumps(marker("card", m.group())) if _luhn(m.group()) else m.group(),
                             segment)
    # Single-quoted strings of malformed lines are texts too.
    return re.sub(r"'(?:[^'\\]|\\.)*'", lambda m: _scrub_text(m.group(), marker), segment)


def _value_end(text: str, i: int) -> int:
    """The end of the JSON value starting at ``i`` (tolerant: an unterminated value runs to the end)."""
    if i >= len(text):
        return i
    if text[i] == '"':
        return _STRING.match(text, i).end()
    if text[i] in "{[":
        depth, j = 0, i
        while j < len(text):
            ch = text[j]
            if ch == '"':
                j = _STRING.match(text, j).end()
                continue
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return len(text)
    return _BARE_VALUE.match(text, i).end()


def _key_name(token: str) -> str:
    try:
        name = json.loads(token)
    except ValueError:
        return token.strip('"')
    return name if isinstance(name, str) else ""


def scrub_text(text: str, key: DataKey | None) -> str:
    """``scrub`` on decoded text (lone surrogates stand for bytes that were not UTF-8)."""
    marker = _marker_fn(key)
    out: list[str] = []
    pos = 0
    while True:
        m = _STRING.search(text, pos)
        if m is None:
            out.append(_scrub_bare(text[pos:], marker))
            break
        out.append(_scrub_bare(text[pos : m.start()], marker))
        token = m.group()
        colon = _COLON.match(text, m.end())
        if colon and is_secret_key(_key_name(token)):
            start = _WS.match(text, colon.end()).end()
            end = _value_end(text, start)
            out.append(token + text[m.end() : start] + json.dumps(marker("secret", text[start:end])))
            pos = end
            continue
        out.append(_scrub_text(token, marker))
        pos = m.end()
    return "".join(out)


def scrub(raw: bytes, key: DataKey | None) -> bytes:
    """The raw line with every secret replaced by ``[redacted:KIND:MAC]`` (MAC under ``key``).

    Bytes that are not valid UTF-8 are kept as they are; JSON stays JSON.
    """
    return scrub_text(raw.decode("utf-8", "surrogateescape"), key).encode("utf-8", "surrogateescape")


def withheld(raw: bytes, key: DataKey, why: str) -> bytes:
    """What is sealed instead of a line that cannot be kept: why, and a keyed digest (distinct lines stay distinct)."""
    subkey = hmac.new(key.material, _SUBKEY_LABEL, hashlib.sha256).digest()
    digest = hmac.new(subkey, b"line\0" + raw, hashlib.sha256).hexdigest()[:32]
    return json.dumps({"ccpipe_withheld": why, "line_mac": digest}, sort_keys=True).encode()


def sealing_owner(tenant_id: str | None, known_tenants: Collection[str], region: str) -> tuple[str, str]:
    """``(owner, purpose)`` of the key that seals a dead letter.

    A tenant of the registry: its ``content`` key (shredding and deletion reach the dead letter).
    Anyone else (no tenant id, or one the registry does not know): the region's ``deadletter`` key.
    """
    if tenant_id and tenant_id in known_tenants:
        return tenant_id, "content"
    return deadletter_key_owner(region), "deadletter"


def seal(dead: DeadLetter, region: str, store: Any, known_tenants: Collection[str]) -> tuple[OutputRow, str]:
    """The encrypted dead-letter row and how it was sealed (``tenant``, ``region`` or ``withheld``).

    ``store``: anything with ``current(owner, purpose) -> DataKey``. Raises when the region's
    dead-letter key is needed and unavailable: nothing is written in plain text.
    """
    owner, purpose = sealing_owner(dead.tenant_id, known_tenants, region)
    how = SEALED_TENANT if purpose == "content" else SEALED_REGION
    try:
        key = store.current(owner, purpose)
    except KeyUnavailableError:
        if how == SEALED_REGION:
            raise
        region_key = store.current(deadletter_key_owner(region), "deadletter")
        payload = withheld(dead.raw, region_key, "the tenant's key is unavailable (shredded or unusable)")
        return encrypt_dead_letter(replace(dead, raw=payload), region, region_key), WITHHELD
    try:
        payload = scrub(dead.raw, key)
    except Exception:  # noqa: BLE001 - a line that cannot be scrubbed is not kept
        payload, how = withheld(dead.raw, key, "the line could not be scrubbed of secrets"), WITHHELD
    return encrypt_dead_letter(replace(dead, raw=payload), region, key), how
