"""Person names that NER misses: any culture, lower case, alone on a line, in lists, after a title.

spaCy's small model misses a third of names in customer text ("this is kim lee", "Mr. olsen",
"Svensson, Estrada and Scott", a signature line "Fortunato Pisano"). With the gazetteer of
``ccpipe.pii.names`` (Faker's names of 80-odd locales, English word frequencies):

* a capitalised full name (2-4 capitalised words or initials, one of them a known name) (0.75);
* a capitalised known name inside a sentence, unless it is a common English word (Zipf > 5.6) (0.6);
* a capitalised known name opening a sentence or a line, if rare in English (Zipf <= 3.5) (0.6);
* two lower-case known names in a row, neither a common word (Zipf <= 5) (0.6);
* any word after a title, whatever its case ("ms. adrian", "Mr. olsen") (0.8).

The engine drops single-word hits that the NER model labels a place, organisation or work.
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult

from ccpipe.pii.engine import COMMON_WORDS
from ccpipe.pii.names import english_words, english_zipf, load_gazetteer, place_words

PATTERNS: list = []  # gazetteer and capitalisation rules, not regexes
CONTEXT = ["name", "mr", "mrs", "ms", "dear", "regards"]
_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿĀ-ʯḀ-ỿ'’]+(?:-[A-Za-zÀ-ÖØ-öø-ÿĀ-ʯḀ-ỿ'’]+)*\.?")
_TITLE = frozenset("mr mrs ms miss mx dr dra sr sra srta prof sir madam mme mlle herr frau".split())
_INITIAL = re.compile(r"^[A-Z]\.?$")
_LABEL_BEFORE = re.compile(
    r"(?i)\b(?:name|user|by|from|to|contact|customer|attn|attention|signed|author|patient|passenger|guest|client|"
    r"caller|cardholder|holder|recipient|sender|dear|spouse|child|kid|son|daughter|wife|husband|mother|father)"
    r"\s*:\s*$|\bdear\s+$"
)
_PLACE_BEFORE = re.compile(
    r"(?i)\b(?:in|at|of|from|near|into|via|across|around|outside|inside|towards|(?:flew|fly|flying|returned|"
    r"travel(?:l?ing)?|moved|moving|coming|going|trip|back|welcome|visit(?:ing)?)\s+to)\s+$"
)
_ESCAPE = re.compile(r"\\[nrt]")
# Words before a name in chat ("hi natalie", "my kid evelyn", "call me crisólogo", "says šefka").
_CUE_BEFORE = re.compile(
    r"(?i)\b(?:hi|hello|hey|dear|thanks|thank you|bye|kid|son|daughter|wife|husband|partner|friend|brother|sister|"
    r"mom|mum|dad|named|name is|name's|name|this is|i'm|im|i am|it's|its|says|said|asked|told|ms|mr|"
    r"mrs|dr|user|contact|customer|attn|signed|call me|called)[.,:]?\s+$"
)
# Words before a name that come before anything else as often: only a rare word after them is a name.
_WEAK_CUE_BEFORE = re.compile(r"(?i)\b(?:and|with|by|to|from|me|for|of|at)\s+$")
_DOUBLED = re.compile(r"(\w)(?=\1)")
_UNSEEN = re.compile(r"^[A-Z][a-zà-öø-ÿā-ʯḁ-ỿ]{2,}$")
_POSSESSIVE = re.compile(r"['’]s?$")
_NOT_NAMES = frozenset(
    """i a an the and or but if of to in on at by for with from as is are was were be been am do does did not no
    yes it its this that these those he she they we you me my your our their his her them us one two three
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july
    august september october november december mon tue wed thu fri sat sun jan feb mar apr jun jul aug sep
    oct nov dec god lord christmas easter internet wifi email phone visa mastercard amex paypal ok okay
    hi hello hey thanks dear regards best kind cheers sir madam zero oh four five six seven eight nine ten
    double triple""".split()
)
# Where a sentence or line starts: capitalisation there is no evidence of a name.
_OPENER = re.compile(r"(?:^|[.!?:;\"“(]|\\n|\n|}})\s*$")
# Words that make a capitalised run an organisation, a product or a place, not a person.
_ORG = frozenset(
    """inc ltd llc plc sa ag gmbh corp corporation co company group bank banco holdings fund agency series shares
    trust partners capital industries international university college school hospital hotel airlines airways
    street road avenue st rd ave foundation association society club church limited bancorp securities
    insurance financial services systems technologies solutions""".split()
)
_PARTICLE = frozenset("van von de da das do dos der den ter ten di del la le du des bin binti al el".split())


class NameGazetteerRecognizer(EntityRecognizer):
    """PERSON findings from the name gazetteer and capitalisation."""

    ENTITY = "PERSON"

    def __init__(self, supported_language: str = "en") -> None:
        """Load the gazetteer (once per process)."""
        self.gazetteer = load_gazetteer()
        self._english = english_words()
        self._places = place_words()
        super().__init__(supported_entities=[self.ENTITY], supported_language=supported_language,
                         name="NameGazetteerRecognizer", context=CONTEXT)

    def load(self) -> None:
        """Loaded in __init__."""

    @staticmethod
    def precheck(text: str) -> bool:
        """Every text with letters can hold a name."""
        return any(c.isalpha() for c in text)

    def analyze(self, text: str, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        """Findings by the rules of the module docstring."""
        text = _ESCAPE.sub("\n ", text)  # "\\n" pasted as text is a line break (same length: offsets hold)
        words = list(_WORD.finditer(text))
        uncased = len(words) >= 3 and not any(c.isupper() for c in text)
        out: list[RecognizerResult] = []
        i = 0
        while i < len(words):
            m = words[i]
            tok = _POSSESSIVE.sub("", m.group().rstrip("."))
            low = tok.lower()
            # A title, then a word of any case.
            if low in _TITLE and i + 1 < len(words) and text[m.end() : words[i + 1].start()].strip() in ("", "."):
                j = i + 1
                while j + 1 < len(words) and words[j + 1].start() - words[j].end() <= 2 and (
                    words[j + 1].group()[:1].isupper() and words[j + 1].group().lower() not in COMMON_WORDS
                    or uncased and self._uncased_part(_POSSESSIVE.sub("", words[j + 1].group().rstrip(".")), True)
                ):
                    j += 1
                if words[i + 1].group().rstrip(".").lower() not in _NOT_NAMES | COMMON_WORDS:
                    out.append(RecognizerResult(self.ENTITY, m.start(), words[j].end(), 0.8))
                    i = j + 1
                    continue
            if tok[:1].isupper() and (len(tok) > 1 or _INITIAL.match(m.group())):
                j = i
                while j + 1 < len(words) and _joins(text, words[j], words[j + 1]):
                    j += 1
                span = [_POSSESSIVE.sub("", w.group().rstrip(".")) for w in words[i : j + 1]]
                if span[0].lower() in COMMON_WORDS or span[0].lower() in _NOT_NAMES:
                    i += 1  # "Thanks Maria": the run starts at the next word
                    continue
                found = self._capitalised(text, m, span, words[j])
                if found:
                    out.append(RecognizerResult(self.ENTITY, m.start(), _end(words[j]), found))
                i = j + 1  # a capitalised run that is not a name ("Fiber Max") is skipped whole
                continue
            # Text written without capitals: names are known names rare in English or unseen words.
            if uncased and tok.islower():
                j = i
                while j + 1 < len(words) and text[words[j].end() : words[j + 1].start()] in (" ", ". ", "") and \
                        self._uncased_part(_POSSESSIVE.sub("", words[j + 1].group().rstrip(".")), j > i or
                                           self.gazetteer.is_name(tok) or self._unseen(tok.capitalize())):
                    j += 1
                score = self._uncased(text, m, [_POSSESSIVE.sub("", w.group().rstrip(".")) for w in words[i : j + 1]])
                if score:
                    out.append(RecognizerResult(self.ENTITY, m.start(), _end(words[j]), score))
                    i = j + 1
                    continue
            # Two lower-case known names in a row ("kim lee").
            if tok.islower() and i + 1 < len(words) and text[m.end() : words[i + 1].start()] == " ":
                nxt = words[i + 1].group().rstrip(".")
                if nxt.islower() and self._lower_name(tok, first=True) and self._lower_name(nxt, first=False):
                    out.append(RecognizerResult(self.ENTITY, m.start(), m.start() + len(tok) + 1 + len(nxt), 0.6))
                    i += 2
                    continue
            i += 1
        return out

    def _unseen_in_english(self, word: str) -> bool:
        low = word.lower()
        if low in self._english or low in self._places:
            return False
        # A typed-in typo of an English word is not a name: "helicoppter", "addresss", "nnames".
        for m in _DOUBLED.finditer(low):
            if low[: m.start()] + low[m.start() + 1 :] in self._english:
                return False
        return True

    def _lower_name(self, word: str, first: bool) -> bool:
        g = self.gazetteer
        if word in _NOT_NAMES or word in COMMON_WORDS or len(word) < 2:
            return False
        known = word in g.first or word in g.last if first else word in g.last
        return known and g.frequency(word) <= 5.0

    def _capitalised(self, text: str, m: re.Match, span: list[str], last: re.Match) -> float:
        g = self.gazetteer
        content = [w for w in span if w.lower() not in _PARTICLE]
        if any(w.lower() in _NOT_NAMES or w.lower().rstrip(".") in _ORG for w in content):
            return 0.0
        opener = _OPENER.search(text, 0, m.start()) is not None
        place = _PLACE_BEFORE.search(text, max(0, m.start() - 30), m.start()) is not None
        real = [w for w in content if not _INITIAL.match(w)]
        if not real:
            return 0.0
        known = [w for w in real if g.is_name(w)]
        unseen = [w for w in real if self._unseen(w)]
        if _LABEL_BEFORE.search(text, max(0, m.start() - 30), m.start()) and (known or unseen):
            return 0.75  # "Name: ...", "User: ...", "Directed by: ..."
        if len(real) >= 2 and not any(w.lower() in COMMON_WORDS for w in real):
            # Every word a known name or a word English has not seen ("Junsaku Hayashida"), never a
            # common one ("Fiber Max"); at least one known, or all unseen and not after a place word.
            if all(g.is_name(w) and english_zipf(w) < 5.6 or w in unseen or english_zipf(w) < 3.5 for w in real) and (
                (real[0].lower() in g.first or real[-1].lower() in g.last)
                or (len(unseen) == len(real) and not place)
                or (unseen and _verb_follows(text, last))  # "Nanase Oyokawa will be talking"
            ):
                return 0.75
            return 0.0
        if len(real) != 1 or len(content) != 1:
            return 0.0
        word = real[0]
        if word.lower() in COMMON_WORDS or word.isupper():
            return 0.0
        if not known:
            # A word English has never seen, capitalised inside a sentence or as the subject of a
            # verb ("Thorkildsen began..."), is a name more often than not; not after "in", "of",
            # "flew to" (a place), and the engine drops it when NER calls it an organisation.
            if unseen and not place and (not opener or _verb_follows(text, m)):
                return 0.5
            return 0.0
        # Opening a sentence, a first name is a name if it is not a common word ("Rebecca is...").
        if opener:
            limit = 5.0 if word.lower() in g.first and _verb_follows(text, m) else 3.5
        else:
            limit = 5.6
        return 0.6 if g.frequency(word) <= limit else 0.0

    def _uncased_part(self, word: str, after_name: bool = False) -> bool:
        """A word that can continue a name in uncased text.

        A known name, an unseen word, an initial, and after a name any rare word ("mikayla weld").
        """
        low = word.lower()
        if len(low) == 1:
            return after_name and low.isalpha()
        if low in _NOT_NAMES or low in COMMON_WORDS:
            return False
        return (self.gazetteer.is_name(low) and english_zipf(low) < 5.0) or self._unseen(word.capitalize()) \
            or low in _PARTICLE or (after_name and english_zipf(low) < 3.5)

    def _uncased(self, text: str, m: re.Match, span: list[str]) -> float:
        """The score of a run of lower-case words in text written without capitals (0: not a name)."""
        g = self.gazetteer
        words = [w for w in span if w.lower() not in _PARTICLE and len(w) > 1]
        if not words or any(w in _NOT_NAMES or w in COMMON_WORDS for w in words):
            return 0.0
        known = [w for w in words if g.is_name(w) and english_zipf(w) < 5.0]
        unseen = [w for w in words if self._unseen(w.capitalize())]
        rare = [w for w in words[1:] if english_zipf(w) < 3.5]
        place = _PLACE_BEFORE.search(text, max(0, m.start() - 30), m.start()) is not None
        cue = _CUE_BEFORE.search(text, max(0, m.start() - 25), m.start()) is not None
        if len(words) >= 2:
            if len(known) + len(unseen) + len(rare) < len(words) or place:
                return 0.0
            # Known names with rare words, or two words English has never seen ("irenka majewska").
            return 0.6 if known or cue or len(unseen) == len(words) else 0.0
        word = words[0]
        if place and (not g.is_name(word) or word in self._places):
            return 0.0  # "university of roma"; but "shouted at justin"
        weak = _WEAK_CUE_BEFORE.search(text, max(0, m.start() - 8), m.start()) is not None
        verb = _verb_follows(text, m)
        zipf = english_zipf(word)
        name = g.is_name(word)
        if name and (cue and zipf < 5.3 or zipf < 4.2 or (weak or verb) and zipf < 4.6):
            return 0.5
        if unseen and (cue or weak or verb):
            return 0.5
        if 0 < zipf < 3.0 and cue or 0 < zipf < 2.5 and verb:
            return 0.5  # a rare word greeted or acting ("hi karp", "mariya is...")
        return 0.0

    def _unseen(self, word: str) -> bool:
        """A capitalised word that is neither English nor a place."""
        return _UNSEEN.match(word) is not None and self._unseen_in_english(word)


_VERB_AFTER = re.compile(
    r"['’]s\b|\s+(?:is|was|has|had|and|said|says|lives|lived|spent|began|will|would|can|from|told|wrote|called|"
    r"went|gave|asked|works|worked|who|shouted|replied|answered|thinks|thought|wants|needs|loves|likes)\b|\s*:"
    r"|,\s+(?:can|could|would|will|please|i|we|you|thank|thanks|are|do|did|have)\b|,\s+[A-Z][a-z]+,"
)


def _verb_follows(text: str, m: re.Match) -> bool:
    """Whether the word is followed by a verb or a colon, as a subject or a speaker is."""
    return _VERB_AFTER.match(text, m.end()) is not None


def _joins(text: str, a: re.Match, b: re.Match) -> bool:
    """Whether word b continues the capitalised name that ends with word a."""
    gap = text[a.end() : b.start()]
    if gap not in (" ", ". ") and not (a.group().endswith(".") and gap == ""):
        return False
    w = b.group().rstrip(".")
    return (w[:1].isupper() and (w.lower() not in COMMON_WORDS or _INITIAL.match(b.group()) is not None)) or \
        w.lower() in _PARTICLE


def _end(m: re.Match) -> int:
    """A word's end, without a sentence full stop (but keeping an initial's dot)."""
    word = m.group()
    return m.end() - 1 if word.endswith(".") and len(word) > 2 else m.end()
