"""Name gazetteers, offline: Faker's per-locale first and last names, and English word frequencies.

Faker (MIT) ships first and last names for 80-odd locales; the Latin-script ones (and the
romanised Japanese and Chinese lists) make the gazetteer: ~21,000 first names and ~22,000 last
names from Hungarian to Finnish, Greek (romanised), Japanese, Vietnamese, Yoruba. wordfreq (code
Apache-2.0, data CC-BY-SA 4.0) says how common each one is as an English word, which is what tells
"Regine" (rare: a name) from "Will" (common: usually a verb) when case cannot. Both are installed
packages: nothing is downloaded.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import re
from dataclasses import dataclass
from functools import lru_cache

_LATIN = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿĀ-ʯḀ-ỿ'’-]{2,}$")


@dataclass(frozen=True)
class NameGazetteer:
    """Lower-cased first and last names."""

    first: frozenset[str]
    last: frozenset[str]

    def is_name(self, word: str) -> bool:
        """Whether a word is a known first or last name."""
        w = word.lower()
        return w in self.first or w in self.last

    def frequency(self, word: str) -> float:
        """A known name's English Zipf frequency (7 = "the", 3 = rare); 0 for unseen words and non-names."""
        return english_zipf(word) if self.is_name(word) else 0.0


@lru_cache(maxsize=1)
def load_gazetteer() -> NameGazetteer:
    """The gazetteer, built once per process from the installed Faker and wordfreq packages."""
    import faker.providers.person as person

    first: set[str] = set()
    last: set[str] = set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{module.name}").Provider
        for attr in dir(provider):
            if not (attr.startswith(("first_name", "last_name")) or attr.endswith("romanized_names")):
                continue
            values = getattr(provider, attr)
            if not isinstance(values, (list, tuple, dict, set, frozenset)) and not hasattr(values, "keys"):
                continue
            target = last if "last" in attr else first
            for name in values:
                target.update(tok.lower() for tok in str(name).split() if _LATIN.match(tok))
    return NameGazetteer(frozenset(first), frozenset(last))


@lru_cache(maxsize=1)
def english_words() -> dict[str, float]:
    """Every word wordfreq has seen in English (lower case), with its frequency.

    What is not here is unknown to English.
    """
    import wordfreq

    return wordfreq.get_frequency_dict("en", wordlist="best")


def english_zipf(word: str) -> float:
    """Any word's English Zipf frequency (0 when unseen)."""
    freq = english_words().get(word.lower())
    return round(math.log10(freq * 1e9), 2) if freq else 0.0


@lru_cache(maxsize=1)
def place_words() -> frozenset[str]:
    """Single words of the city, state, region and country names of Faker's address providers (lower case)."""
    import faker.providers.address as address

    out: set[str] = set()
    for module in pkgutil.iter_modules(address.__path__):
        provider = importlib.import_module(f"{address.__name__}.{module.name}").Provider
        for attr in ("cities", "city_names", "states", "countries", "provinces", "regions", "departments"):
            values = getattr(provider, attr, None)
            if not isinstance(values, (list, tuple, dict)):
                continue
            for name in values:
                name = name[1] if isinstance(name, tuple) else name
                out.update(tok.lower() for tok in str(name).split() if _LATIN.match(tok) and len(tok) > 2)
    return frozenset(out)
