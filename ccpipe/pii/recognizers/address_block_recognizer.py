"""Postal addresses in international forms, single-line or as a block of lines.

Patterns alone cannot cover the world's address formats ("Tjernveien 150", "5014 Apáczai Csere
János u. 55.", "PSC 4377, Box 2567 / APO AP 42078", "Flat 3 / 12 High St / LEEDS / LS1 4AB").
This recognizer reads a text as runs of *address-like tokens* (numbers, capitalised or upper-case
words, street particles, commas and line breaks) separated by ordinary sentence words, and keeps a
run as an ADDRESS when it carries enough evidence (``PATTERNS``, scored):

* strong: a unit/box ("Apt. 12", "Suite 4", "PSC 4377, Box 2567"), a military post line
  ("APO AE 12345", "USNS Smith"), a street word next to a house number in any of the service
  languages ("12 Long Street", "Kerkstraat 21", "Rua das Flores, 123", "Hauptstraße 5"), a
  postcode of a known shape (UK, Canada, US state + ZIP, NL);
* weaker: a house number before or after capitalised words, a line break inside the run, a
  country or US state name, a number of postcode length.

One strong or three weaker signals make an address. The run's ends are trimmed to its first and
last capitalised word or number. Ordinary lower-case words end a run, so "flight BA 123 to London
on 3 March" is not an address.
"""

from __future__ import annotations

import re
from functools import lru_cache

from presidio_analyzer import EntityRecognizer, RecognizerResult

from ccpipe.pii.engine import COMMON_WORDS
from ccpipe.pii.names import english_zipf

PATTERNS: list = []  # token evidence below, not one regex
CONTEXT = ["address", "live", "street", "deliver", "moved", "postcode", "zip", "ship", "mail"]

STREET_WORDS = frozenset(
    """street st str road rd avenue ave av avda avenida lane ln drive dr way court ct place pl plaza boulevard
    blvd bd terrace tce crescent cres close grove park square sq hill row walk gardens mews parade highway hwy
    parkway pkwy circle cir trail trl path pike point ridge run view vista alley wharf quay esplanade rue
    chemin allée allee impasse route via viale vicolo piazza piazzale corso largo strada calle carrer camino
    paseo plaza praça praca rua travessa alameda rodovia estrada ladeira ul ulica aleja al u utca út tér
    körút ut tie katu polku kuja gatan gata vägen väg gränd gade vej veien vegen gata stræde allé strasse
    straße gasse weg platz ring damm ufer chaussee steig laan straat plein gracht kade dijk singel hof dreef
    pad steeg markt sokak sokağı cadde caddesi bulvar mahallesi ulitsa prospekt naberezhnaya vial contrada
    incrocio rotonda borgo vico localita località frazione traversa travessa vereda fazenda quadra conjunto
    setor path marg nagar ganj chowk gali mohalla colony sector phase estates centers centre center""".split()
)
# Street words written as a suffix of the street's name ("Kerkstraat", "Amsinckstrasse", "Parkveien").
_SUFFIX = re.compile(
    r"(?i)\w{2,}(?:straat|strasse|straße|str\.|gasse|weg|platz|allee|laan|plein|gracht|kade|dijk|singel|dreef|"
    r"gade|vej|veien|vegen|gatan|vägen|väg|gata|katu|tie|polku|kuja|utca|út|stræde|vænget|ring|damm|ufer|hof|str|"
    r"steig|markt|straat|sokak|sokağı|caddesi|road|street|avenue|lane|drive)$"
)
_UNIT = re.compile(r"(?i)^(?:apt|apartment|suite|ste|unit|flat|floor|fl|box|psc|room|rm|bldg|building|level|"
                   r"lvl|house|no|nr|#|p\.?o\.?|po|cmr|unit#|h\.?\s?no|appartamento|interno|scala|piano|piso|"
                   r"puerta|andar|bloco|lote|casa|apto|étage|etage|bus|wohnung|lgh|lägenhet|leil|asunto|as|bt|"
                   r"portal|escalera|esc|dpto|depto)\.?$")
_CJK_ADDRESS = re.compile(r"\d+\s?(?:丁目|番地?|号|조|동|번지)")
_POSTCODE_LETTERS = re.compile(r"\s?[A-Z]{2}\b")
_ZIP_CUE = re.compile(
    r"(?i)\b(?:zip|zip code|zipcode|postcode|post code|postal code|plz|cep|cap)\s*(?:is)?\s*[:#]?\s*$"
)
_MILITARY = re.compile(r"(?i)^(?:APO|FPO|DPO)$")
_SHIP = re.compile(r"(?i)^(?:USNS|USS|USNV|USCGC|USCG)$")
_POSTCODE = re.compile(
    r"^(?:[A-Z]{1,2}\d[A-Z\d]?|[A-Z]\d[A-Z])$"  # first half of a UK / Canadian postcode ("SW1A", "M34", "K1A")
)
_POSTCODE_2ND = re.compile(r"^(?:\d[A-Z]{2}|\d[A-Z]\d)$")  # second half ("1AA", "0B1")
_NUM = re.compile(r"^(?:#|No\.?|Nr\.?)?\d[\dA-Za-z/.\-]{0,9}\.?$|^\d{1,5}[A-Za-z]?\)?$|^[A-Z]?-?\d{2,6}(?:-\d{1,4})?$")
_PARTICLES = frozenset(
    """de del la le las los da do dos das du des di della delle van von der den ter ten het te y e and of on
    u. u ul. ul. al. út sur am an im auf bei unter zum zur 't""".split()
)
# A token: a line break (real, or the two characters backslash-n), junk separators seen in pasted
# address blocks ("}}", "???"), a comma, or a run of non-space characters.
_TOKEN = re.compile(r"\\n|\r?\n|\}\}|\?{2,}|[,;]|[^\s,;\\]+(?:\\(?!n)[^\s,;\\]*)*")
_TRIM = ".,;:!?\"'()[]{}"
_CUE = re.compile(
    r"(?i)\b(?:address(?:\s+is)?|live[sd]?\s+(?:on|at|in)|living\s+(?:on|at|in)|sent\s+to|send\s+(?:it\s+)?to|"
    r"deliver(?:ed|y)?\s+to|ship(?:ped)?\s+to|return\s+to|meet\s+me\s+at|located\s+at|side\s+of|moved\s+to|"
    r"corner\s+of|zip|postcode|post\s+code)\s*[:,]?\s*$"
)


@lru_cache(maxsize=1)
def _gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """Country and US state names (single words, lower-cased), and US state / military abbreviations."""
    from faker.providers.address.en import Provider as En
    from faker.providers.address.en_US import Provider as Us

    words = {w.lower() for name in (*En.countries, *Us.states) for w in name.split() if len(w) >= 3}
    abbr = set(Us.states_abbr) | set(Us.military_state_abbr) | {"DC", "PR", "GU", "VI"}
    return frozenset(words), frozenset(abbr)


def _kind(tok: str, uncased: bool = False) -> str:
    if tok in ("\n", "\r\n", "\\n", "}}") or tok.startswith("??"):
        return "BREAK"
    if tok in (",", ";", "/", "-", "–"):
        return "COMMA"
    core = tok.strip(_TRIM)
    if not core:
        return "STOP"
    if _CJK_ADDRESS.search(core):
        return "STREET"  # a Japanese block address: 42丁目17番6号
    if _NUM.match(core) or (any(c.isdigit() for c in core) and len(core) <= 10):
        return "NUM"
    low = core.lower()
    if low in STREET_WORDS or _UNIT.match(core) or (low.endswith("s") and low[:-1] in STREET_WORDS):
        return "STREET"
    if tok.lower() in _PARTICLES or low in _PARTICLES:
        return "PART"
    if low == "nan" or low in _gazetteer()[0]:
        return "CAP"
    if core[0].isupper() and (low not in COMMON_WORDS or core.isupper() and len(core) > 2):
        return "CAP"
    if core[0].isalpha() and not core[0].islower():
        return "CAP"  # scripts without case (Chinese, Japanese, Thai...)
    if uncased and low not in COMMON_WORDS and low.isalpha() and english_zipf(low) < 4.5:
        return "CAP"  # in text written without capitals, a rare word can be a street or a city
    return "STOP"


def _ends_sentence(tok: str) -> bool:
    return tok.endswith(("?", "!")) or (tok.endswith(".") and len(tok.strip(_TRIM)) > 3 and not tok[:-1].isdigit()
                                         and tok.strip(_TRIM).lower() not in STREET_WORDS)


class AddressBlockRecognizer(EntityRecognizer):
    """ADDRESS findings for single-line and multi-line postal addresses of any country."""

    ENTITY = "ADDRESS"

    def __init__(self, supported_language: str = "en") -> None:
        """Nothing to configure."""
        super().__init__(supported_entities=[self.ENTITY], supported_language=supported_language,
                         name="AddressBlockRecognizer", context=CONTEXT)

    def load(self) -> None:
        """Nothing to load."""

    @staticmethod
    def precheck(text: str) -> bool:
        """An address has a number (house, unit, box or postcode) in it."""
        return any(c.isdigit() for c in text)

    def analyze(self, text: str, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        """One finding per run of address-like tokens with enough evidence."""
        out: list[RecognizerResult] = []
        run: list[tuple[re.Match, str]] = []
        uncased = not any(c.isupper() for c in text)
        for m in _TOKEN.finditer(text):
            kind = _kind(m.group(), uncased)
            if kind == "STOP":
                self._close(run, text, out, uncased)
                run = []
                continue
            run.append((m, kind))
            if kind != "BREAK" and _ends_sentence(m.group()) and not _UNIT.match(m.group().strip(_TRIM)):
                self._close(run, text, out, uncased)
                run = []
        self._close(run, text, out, uncased)
        return out

    def _close(self, run: list[tuple[re.Match, str]], text: str, out: list[RecognizerResult],
               uncased: bool = False) -> None:
        while run and run[0][1] in ("BREAK", "COMMA", "PART"):
            run = run[1:]
        while run and run[-1][1] in ("BREAK", "COMMA", "PART"):
            run = run[:-1]
        if len(run) == 1 and run[0][1] == "NUM" and _ZIP_CUE.search(text, max(0, run[0][0].start() - 20),
                                                                        run[0][0].start()):
            m = run[0][0]  # "ZIP: 99003", "my zip code is 5848 OY"
            end = m.end()
            nxt = _POSTCODE_LETTERS.match(text, end)
            out.append(RecognizerResult(self.ENTITY, m.start(), nxt.end() if nxt else end, 0.85))
            return
        if len(run) < 2:
            return
        cue = _CUE.search(text, max(0, run[0][0].start() - 30), run[0][0].start()) is not None
        score = _evidence([m.group().strip(_TRIM) for m, _ in run], [k for _, k in run], strong_only=uncased, cue=cue)
        if score is None:
            return
        start = run[0][0].start()
        end = run[-1][0].end()
        while end > start and text[end - 1] in ".,;:!?)\"'":
            if text[end - 1] == "." and run[-1][1] in ("STREET", "NUM"):
                break
            if text[end - 1] == ")" and "(" in run[-1][0].group():
                break  # "Felizzano (AL)"
            end -= 1
        out.append(RecognizerResult(self.ENTITY, start, end, score))


def _evidence(toks: list[str], kinds: list[str], strong_only: bool = False, cue: bool = False) -> float | None:
    """The score of a run of tokens, or None if it is not an address.

    ``strong_only``: weak signals alone never make one, as in text without capitals, where any rare
    word reads like a street or a city. ``cue``: an address phrase comes just before the run ("my
    address is", "lives on", "deliver to"), which counts as a strong signal.
    """
    places, abbr = _gazetteer()
    strong = weak = 0
    has_num = "NUM" in kinds
    has_word = "CAP" in kinds or "STREET" in kinds
    if not (has_num and has_word):
        return None
    n = len(toks)
    for i, (tok, kind) in enumerate(zip(toks, kinds, strict=True)):
        nxt = kinds[i + 1] if i + 1 < n else ""
        prv = kinds[i - 1] if i else ""
        if _POSTCODE.match(tok) and i + 1 < n and _POSTCODE_2ND.match(toks[i + 1]):
            strong += 1
        if kind == "STREET":
            if _CJK_ADDRESS.search(tok) or _UNIT.match(tok) and nxt == "NUM":
                strong += 1
            elif "NUM" in (nxt, prv) or (i + 2 < n and kinds[i + 2] == "NUM") or (i >= 2 and kinds[i - 2] == "NUM"):
                strong += 1
            else:
                weak += 1
        elif kind == "CAP":
            if _MILITARY.match(tok) and i + 1 < n and toks[i + 1].upper() in abbr:
                strong += 1
            elif _SHIP.match(tok) and nxt == "CAP":
                strong += 1
            elif _SUFFIX.match(tok) and ("NUM" in (nxt, prv)):
                strong += 1
            elif tok.upper() in abbr and nxt == "NUM" and re.fullmatch(r"\d{5}(?:-\d{4})?", toks[i + 1]):
                strong += 1
            elif tok.lower() in places:
                weak += 1
        elif kind == "NUM":
            if nxt == "CAP" or (prv == "CAP" and i >= 1):
                weak += 1
            if re.fullmatch(r"\d{4,5}(?:-\d{3,4})?", tok):
                weak += 1
        elif kind == "BREAK" and prv in ("CAP", "NUM", "STREET", "COMMA") and nxt in ("CAP", "NUM", "STREET"):
            weak += 1
    # A house number, a street name and a number again ("1500 Norrfjäll 91", "Eichendorffstr. 31").
    for i in range(n - 2):
        if kinds[i] == "NUM" and kinds[i + 1] in ("CAP", "STREET") and "NUM" in kinds[i + 2 : i + 5]:
            strong += 1
            break
    if cue and "NUM" in kinds:
        strong += 1
    if strong:
        return 0.9 if strong > 1 or weak else 0.8
    if weak >= 3 and n >= 3 and not strong_only:
        return 0.6
    return None
