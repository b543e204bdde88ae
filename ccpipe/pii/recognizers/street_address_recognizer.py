"""Street addresses as written in the service regions' English, Dutch and Brazilian forms.

* house number first: "17066 Heather Grove Apt. 915", "Unit 60 3 Crosby Ride", "6/170 Reynolds Wade"
* Dutch: "Kerkstraat 12", "Lolahof 7b"
* Brazilian: "Rua das Flores, 123", "Praça André Sampaio"
* "Flat 17, Janet Meadows"

A house number followed by one to three capitalised words ending in a street word, or any
capitalised words after "I live at" / "my address is", count.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern

from ccpipe.pii.recognizers._base import CcpipePatternRecognizer

STREET_WORDS = (
    "Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Boulevard|Blvd|Terrace|Crescent|Close|"
    "Grove|Park|Square|Sq|Hill|Hills|Row|Walk|Gardens|Mews|Parade|Highway|Hwy|Parkway|Pkwy|Circle|Cir|Trail|Trl|"
    "Path|Pike|Plaza|Point|Ridge|Run|Trace|Track|View|Vista|Mountain|Mountains|Pines|Stream|Spur|Burg|Burgs|"
    "Meadow|Meadows|Wade|End|Alleyway|Ride|Green|Gate|Rise|Loop|Bend|Cove|Creek|Crossing|Estate|Estates|Falls|"
    "Ferry|Field|Fields|Flat|Flats|Ford|Forest|Fork|Forks|Fort|Garden|Glen|Harbor|Harbour|Haven|Heights|Island|"
    "Junction|Key|Knoll|Knolls|Lake|Lakes|Landing|Light|Lights|Lock|Locks|Manor|Mill|Mills|Mission|Mount|Neck|"
    "Orchard|Oval|Pass|Port|Prairie|Radial|Ranch|Rapids|Rest|River|Shoal|Shoals|Shore|Shores|Spring|Springs|"
    "Station|Summit|Tunnel|Turnpike|Union|Valley|Viaduct|Ville|Village|Well|Wells|Causeway|Chase|Circuit|Copse|"
    "Corner|Dale|Dell|Edge|Esplanade|Glade|Grange|Heath|Hollow|Knoll|Lea|Mall|Nook|Quay|Reach|Retreat|Ring|"
    "Strand|Vale|Wharf|Wood|Woods|Yard|Alley|Arcade|Avenue|Bypass|Concourse|Cul-de-sac|Esplanade|Fairway|"
    "Freeway|Frontage|Gully|Gap|Lookout|Outlook|Promenade|Quadrant|Rotary|Serviceway|Steps|Tollway|Underpass|"
    "Boardwalk|Brace|Break|Brow|Centre|Chase|Cross|Crossway|Cutting|Dip|Drive|Driveway|Entrance|Expressway|"
    "Firetrail|Flat|Follow|Footway|Glen|Grove|Hub|Interchange|Laneway|Link|Mews|Motorway|Pocket|Port|Ramble|"
    "Reserve|Ridgeway|Round|Route|Rue|Shunt|Strip|Terrace|Thoroughfare|Track|Trunkway|Turn|Twist|Upper|Vale|"
    "Walkway|Wynd"
)
DUTCH_SUFFIXES = "straat|laan|weg|hof|plein|boulevard|singel|gracht|kade|dijk|park|dreef|pad|steeg|markt|baan|ring"
BR_PREFIXES = (
    "Rua|Avenida|Av\\.|Praça|Travessa|Alameda|Rodovia|Estrada|Largo|Campo|Recanto|Fazenda|Setor|Vila|Via|Vereda|"
    "Lago|Loteamento|Núcleo|Parque|Quadra|Residencial|Sítio|Trecho|Distrito|Chácara|Colônia|Condomínio|Conjunto|"
    "Favela|Feira|Ladeira|Lagoa|Morro|Passarela|Pátio|Rampa|Viaduto|Viela|Esplanada|Aeroporto|Área|Estação|"
    "Jardim|Vale|Sítio|Rodovia"
)
_CAP = r"[A-Z][A-Za-zÀ-ÿ'’.-]+"
_CITY = r"(?:,\s*[A-Z][a-zà-ÿ]+(?:\s[A-Z][a-zà-ÿ]+)?(?=[\s,.!?;]|\Z))?"
_UNIT = r"(?:\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|#)\s*\d+[A-Za-z]?)?"
PATTERNS = [
    Pattern(
        "number then street",
        rf"\b(?:(?:Unit|Flat|Apt\.?|Suite|Level|Floor)\s*\d+[A-Za-z]?,?\s+|(?:Blk|Block)\s+)?\d{{1,5}}[A-Za-z]?(?:/\d{{1,5}})?\s+"
        rf"(?:{_CAP}\s+){{0,3}}(?:{STREET_WORDS})\b\.?(?:\s\d{{1,3}}\b)?{_UNIT}(?:\s#\d{{1,3}}-\d{{1,5}})?{_CITY}",
        0.9,
    ),
    Pattern(
        "Dutch street then number",
        rf"\b[A-Z][a-zà-ÿ'-]*(?:{DUTCH_SUFFIXES})\s+\d{{1,5}}(?:\s?[a-zA-Z])?\b{_CITY}",
        0.9,
    ),
    Pattern(
        "Brazilian street",
        rf"\b(?:{BR_PREFIXES})\s+(?:(?:d[aeo]s?|de)\s+)?{_CAP}(?:\s+(?:(?:d[aeo]s?|de)\s+)?{_CAP}){{0,3}}(?:,\s*\d{{1,5}})?",
        0.86,
    ),
    Pattern("flat then street", rf"\bFlat\s+\d+[A-Za-z]?,?\s+(?:{_CAP}\s+){{0,3}}(?:{STREET_WORDS})\b{_CITY}", 0.9),
    Pattern(
        "after an address phrase",
        r"(?i:(?<=\blive at )|(?<=\baddress is )|(?<=\bmove to )|(?<=\bdeliver to )|(?<=\bsend it to )"
        r"|(?<=\bmoved to )|(?<=\bship to ))"
        r"[A-Z0-9](?:Apt\.|St\.|Rd\.|Ave\.|[^.!?;])+?(?=[.!?;](?:\s|\Z)|\Z)",
        0.86,
    ),
]
CONTEXT = ["address", "live", "street", "deliver", "moved", "postcode", "zip"]
_HINT = re.compile(rf"\d|(?:{DUTCH_SUFFIXES})\b|\b(?:{BR_PREFIXES})\b|(?i:live at|address)")


class StreetAddressRecognizer(CcpipePatternRecognizer):
    """ADDRESS findings for street addresses."""

    ENTITY = "ADDRESS"

    PATTERNS = PATTERNS
    CONTEXT = CONTEXT

    @staticmethod
    def precheck(text: str) -> bool:
        """Texts with a digit, a Dutch or Brazilian street word, or an address phrase."""
        return _HINT.search(text) is not None
