"""Dead letters before they are sealed: secrets out, and the key that seals them (Beam-free).

SPEC §3: secrets (passwords, PINs/DTMF, card numbers) are removed or hashed before a dead letter is
sealed, and a known tenant's dead letters are sealed under that tenant's key, so that shredding the
tenant (and deleting its data) reaches them.

``scrub(raw, key)`` replaces each secret in a raw input line with ``[redacted:KIND:MAC]``: MAC is a
keyed hash (HMAC-SHA256 under a subkey of the sealing key, 64 bits) that tells two secrets apart without
revealing them, so that the same line always scrubs the same way under the same key (dead-letter ids
stay stable) and two lines that differ only in a secret do not collide. A line that parses as JSON is
scrubbed on its decoded values (escapes such as ``\u0034`` cannot hide a secret) and re-serialized
(key order, duplicate keys and number spellings kept); any other line (truncated, not JSON, not UTF-8)
is scrubbed on its raw text, every other byte kept as it was. What it removes:

* the value of every key that names a secret, at any depth: ``password``, ``pass``, ``pw``, ``pin``,
  ``dtmf_digits``, ``cvv``, ``card_number``, ``secret``, ``token``, ``otp``, ``authorization``,
  ``bearer``, ``cookie``, ``session``, ``credentials``, ``private_key``, ``api_key`` and other
  ``*_key`` names of secrets, a bare ``key``, ... (quoted, single-quoted or bare keys);
* in every text: card numbers (Luhn-valid 13-19 digits, or grouped 4-4-4-4, separated by spaces, dots,
  dashes or slashes), digits after a PIN / passcode / code / OTP / DTMF word, keypad digits ending in
  ``#``, runs of four or more spoken digits, the word after "password is" / "password:" / "pw:" /
  "pass:", ``Bearer``/``Basic`` credentials, JWTs and PEM private-key blocks.

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
    {"password", "passwd", "pwd", "pw", "pass", "pword", "passphrase", "passcode", "pin", "pincode", "dtmf", "cvv",
     "cvc", "cvv2", "cvc2", "secret", "secrets", "token", "tokens", "otp", "totp", "pan", "iban", "authorization",
     "bearer", "cookie", "cookies", "session", "sessionid", "credential", "credentials", "creds", "privkey",
     "apikey"}
)
_SECRET_JOINED = ("password", "passwd", "passphrase", "passcode", "dtmf", "cardnumber", "creditcard", "cardno",
                  "securitycode", "apikey", "accesstoken", "pincode", "secret", "authorization", "credential",
                  "privatekey", "accesskey", "signingkey", "masterkey", "encryptionkey", "sshkey", "clientkey",
                  "sessionkey", "authkey", "hmackey", "authtoken", "refreshtoken", "sessioncookie", "setcookie")
# "<qualifier>_key" names a secret for these qualifiers (and a bare "key" does too).
_KEY_QUALIFIERS = frozenset(
    {"api", "private", "priv", "secret", "access", "signing", "sign", "master", "encryption", "enc", "decryption",
     "client", "ssh", "session", "auth", "hmac", "shared", "app", "consumer", "service", "account", "root", "aes",
     "rsa", "pgp", "gpg", "crypto", "license", "licence", "secure", "login", "user", "admin", "webhook"}
)
_KEY_WORDS = r"(?:pass(?:word|wd|phrase|code)?|pwd|pw|pin(?:[ _-]?code)?|dtmf(?:[ _-]?digits)?|cvv2?|cvc2?|secret|" \
             r"(?:access[ _-]?|api[ _-]?|auth[ _-]?|refresh[ _-]?)?token|(?:api|private|secret|access)[ _-]?key|otp|" \
             r"card[ _-]?(?:number|no)|security[ _-]?code|authorization|bearer|cookie|" \
             r"session(?:[ _-]?(?:id|cookie|token|key))?|credentials?)"

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
_CARD = re.compile(r"(?<![\d.,+-])\d(?:[ ./-]?\d){11,18}(?!\d|[.,-]\d)")
_CARD_SHAPE = re.compile(r"\d{4}([ ./-])\d{4}\1\d{4}\1\d{3,4}|\d{4}([ /-])\d{6}\2\d{4,5}")
_PIN = re.compile(
    r"(?i)(\b(?:pin(?:\s*code)?|passcode|pass\s*code|password|code|security\s*code|cvv2?|cvc2?|dtmf|keypad|otp|tan|"
    r"digits|pressed|entered|press|enter)\b[\s\"'\\]*(?:number\s+)?(?:(?:is|was|are|:|=)[\s\"'\\]*)?)"
    r"([#*]?\d(?:[ -]?[\d#*]){2,15})"
)
_KEYPAD = re.compile(r"(?<![\w#*])[#*]?\d{4,12}[#*](?!\w)")
_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple)"
_SPOKEN = re.compile(rf"(?i)\b{_DIGIT_WORD}(?:[ ,-]+{_DIGIT_WORD}){{3,}}\b")
_PASSWORD_WORD = re.compile(
    r"(?i)(\b(?:(?:password|passwd|passphrase|pwd|pword|pw)\b[\s\"'\\]*(?:is|was|:|=)|pass\b[\s\"'\\]*[:=])"
    r"[\s\"'\\]*)((?:[^\s\"\\]|\\.)+)"
)
_JWT = re.compile(
    r"(?<![\w-])(?:eyJ[\w-]{2,}\.[\w-]*\.[\w-]*|[\w-]{16,}\.[\w-]{16,}\.[\w-]{16,})(?:\.[\w-]*\.[\w-]*)?(?![\w-])",
    re.A,
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|token)(\s+)([A-Za-z0-9._~+/-]{8,}=*)")
_PEM = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|(?=\")|\Z)",
    re.S,
)
_MARKER = re.compile(r"(\[redacted:[a-z_]+(?::[0-9a-f]{16})?\])")

# The deepest nesting of arrays and objects a line may have (contract §1, "bounded nesting"). Parsing
# (transforms.parse), the dead-letter id look-up and the JSON scrub below all refuse deeper lines up
# front instead of relying on RecursionError: where that strikes depends on how deep the call stack
# already is, which differs between runners (in-process FnApiRunner, --workers N, Dask) and fused
# stages, so the same line could be a record on one runner and a dead letter (or another dead-letter
# id) on another. 100 leaves room under Python's recursion limit for every recursive step after it.
MAX_NESTING = 100
_NESTING_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)|[\[\]{}]', re.S)


def nesting_exceeds(text: str, limit: int = MAX_NESTING) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` deep (brackets inside strings skipped).

    Iterative, so the answer never depends on the caller's stack. It never under-counts what
    ``json.loads`` would reach: both read strings the same way, and the parser stops at the first error.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _NESTING_TOKEN.finditer(text):
        bracket = text[match.start()]
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        elif bracket in "]}":
            depth -= 1
    return False


def _luhn(digits: str) -> bool:
    from ccpipe.pii.recognizers.luhn_card_recognizer import luhn_valid

    return luhn_valid(digits)


def is_secret_key(name: str) -> bool:
    """True when a field name says its value is a secret (``password``, ``pinCode``, ``dtmf_digits``, ...)."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    if any(w in _SECRET_WORDS for w in words):
        return True
    if words and words[-1] in ("key", "keys", "auth") and (len(words) == 1 or words[-2] in _KEY_QUALIFIERS):
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


def _outside_markers(text: str, step: Callable[[str], str]) -> str:
    """``step`` applied to the text between markers (a marker is never scrubbed again)."""
    parts = _MARKER.split(text)
    return "".join(part if i % 2 else step(part) for i, part in enumerate(parts))


def _scrub_text(text: str, marker: Callable[[str, str], str]) -> str:
    """Secrets in free text (a JSON string token, quotes included, a decoded string, or a whole unparseable line)."""

    def card(m: re.Match) -> str:
        digits = re.sub(r"\D", "", m.group())
        if (13 <= len(digits) <= 19 and _luhn(digits)) or _CARD_SHAPE.fullmatch(m.group()):
            return marker("card", digits)
        return m.group()

    def scheme(m: re.Match) -> str:
        value = m.group(3)
        if len(value) < 20 and not re.search(r"[\d._~+/=-]", value):
            return m.group()  # "basic questions": a word, not a credential
        return m.group(1) + m.group(2) + marker("token", value)

    steps: list[Callable[[str], str]] = [
        lambda t: _PEM.sub(lambda m: marker("private_key", m.group()), t),
        lambda t: _JWT.sub(lambda m: marker("token", m.group()), t),
        lambda t: _AUTH_SCHEME.sub(scheme, t),
        lambda t: _CARD.sub(card, t),
        lambda t: _PASSWORD_WORD.sub(lambda m: m.group(1) + marker("password", m.group(2)), t),
        lambda t: _PIN.sub(lambda m: m.group(1) + marker("pin", m.group(2)), t),
        lambda t: _KEYPAD.sub(lambda m: marker("pin", m.group()), t),
        lambda t: _SPOKEN.sub(lambda m: marker("pin", m.group()), t),
    ]
    for step in steps:
        text = _outside_markers(text, step)
    return text


def _scrub_bare(segment: str, marker: Callable[[str, str], str], quote: bool = True) -> str:
    """Secrets outside JSON strings: bare or single-quoted secret keys, card numbers as numbers.

    ``quote``: markers become JSON strings (a raw line); not inside a decoded string.
    """
    wrap = json.dumps if quote else str

    def loose(m: re.Match) -> str:
        value = m.group(2)
        if value.startswith(('"[redacted:', "[redacted:")):
            return m.group()
        return m.group()[: m.start(2) - m.start()] + wrap(marker("secret", value))

    segment = _outside_markers(segment, lambda t: _LOOSE_KEY.sub(loose, t))
    segment = _outside_markers(segment, lambda t: _BARE_CARD.sub(
        lambda m: wrap(marker("card", m.group())) if _luhn(m.group()) else m.group(), t))
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


def _dump_str(text: str) -> str:
    """A JSON string; escaped (ASCII) when it holds lone surrogates, so that it encodes as UTF-8."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return json.dumps(text)
    return json.dumps(text, ensure_ascii=False)


def _scrub_token(token: str, marker: Callable[[str, str], str]) -> str:
    """A JSON string token of a raw line: scrubbed on its decoded value (kept as written when nothing changes)."""
    if len(token) >= 2 and token.endswith('"'):
        try:
            decoded = json.loads(token)
        except ValueError:
            decoded = None
        if isinstance(decoded, str):
            scrubbed = _scrub_string(decoded, marker)
            return token if scrubbed == decoded else _dump_str(scrubbed)
    return _scrub_text(token, marker)  # unterminated (truncated line) or not decodable


def _scrub_raw(text: str, marker: Callable[[str, str], str], embedded: bool = False) -> str:
    """The raw-text scrub: secret keys' values, JSON string tokens, and what lies outside them.

    ``embedded``: ``text`` is a decoded string value (markers outside its own JSON strings stay unquoted).
    """
    out: list[str] = []
    pos = 0
    while True:
        m = _STRING.search(text, pos)
        if m is None:
            out.append(_scrub_bare(text[pos:], marker, not embedded))
            break
        out.append(_scrub_bare(text[pos : m.start()], marker, not embedded))
        token = m.group()
        colon = _COLON.match(text, m.end())
        if colon and is_secret_key(_key_name(token)):
            start = _WS.match(text, colon.end()).end()
            end = _value_end(text, start)
            out.append(token + text[m.end() : start] + json.dumps(marker("secret", text[start:end])))
            pos = end
            continue
        out.append(_scrub_token(token, marker))
        pos = m.end()
    return "".join(out)


def _scrub_string(text: str, marker: Callable[[str, str], str]) -> str:
    """A decoded string: JSON or key-value text inside it, then the free-text secrets."""
    return _scrub_text(_scrub_raw(text, marker, embedded=True), marker)


class _Pairs(list):
    """A JSON object as its (key, value) pairs: order and duplicate keys kept."""


class _Number(str):
    """A JSON number (or NaN/Infinity) as written."""


def _scrub_value(value: Any, marker: Callable[[str, str], str]) -> Any:
    if isinstance(value, _Pairs):
        return _Pairs(
            (_scrub_string(k, marker), marker("secret", _dump(v)) if is_secret_key(k) else _scrub_value(v, marker))
            for k, v in value
        )
    if isinstance(value, list):
        return [_scrub_value(v, marker) for v in value]
    if isinstance(value, _Number):
        if 13 <= len(value) <= 19 and value.isdigit() and value.isascii() and _luhn(value):
            return marker("card", str(value))  # a JSON string from now on
        return value
    if isinstance(value, str):
        return _scrub_string(value, marker)
    return value


def _dump(value: Any) -> str:
    if isinstance(value, _Pairs):
        return "{" + ", ".join(f"{_dump_str(k)}: {_dump(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, str):
        return _dump_str(value)
    return json.dumps(value)  # true, false, null


def _scrub_json(text: str, marker: Callable[[str, str], str]) -> str | None:
    """A JSON line scrubbed on its decoded values and re-serialized; None when the line is not JSON."""
    try:
        value = json.loads(text, object_pairs_hook=_Pairs, parse_int=_Number, parse_float=_Number,
                           parse_constant=_Number)
    except (ValueError, RecursionError):
        return None
    try:
        return _dump(_scrub_value(value, marker))
    except RecursionError:
        return None


def scrub_text(text: str, key: DataKey | None) -> str:
    """``scrub`` on decoded text (lone surrogates stand for bytes that were not UTF-8)."""
    marker = _marker_fn(key)
    scrubbed = None
    # Bytes that were not UTF-8, or nesting deeper than MAX_NESTING: not JSON (the raw scrub is
    # iterative; the JSON one recurses, and where recursion fails must not decide the outcome).
    if not any("\udc80" <= ch <= "\udcff" for ch in text) and not nesting_exceeds(text):
        scrubbed = _scrub_json(text, marker)
    return _scrub_raw(text, marker) if scrubbed is None else scrubbed


def scrub(raw: bytes, key: DataKey | None) -> bytes:
    """The line with every secret replaced by ``[redacted:KIND:MAC]`` (MAC under ``key``).

    A JSON line is scrubbed on its decoded values and re-serialized; any other line on its raw text
    (bytes that are not valid UTF-8 are kept as they are).
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
