"""What a long-lived worker keeps between batches does not grow with the input it has seen.

spaCy adds the string and lexeme of every new token to the model's vocab, for good, unless the
text is analysed in a memory zone (``PiiTagger._ner``): these tests pin that the tagger's vocab is
the same size after any number of batches of never-seen tokens, and that the zone changes no finding.
"""

import threading

import pytest

from ccpipe.pii.engine import PiiConfig, PiiTagger, TextGroup, known_value_matcher


@pytest.fixture(scope="module")
def tagger():
    return PiiTagger(PiiConfig())


def _novel_texts(batch: int, n: int = 40) -> list[str]:
    """Texts full of tokens no earlier batch used (ids, codes, made-up surnames)."""
    return [
        f"Hi, this is Zorblat Quenvik{batch}x{i} from Ulmwood, my order is QX{batch:04d}{i:04d}-ref "
        f"and my code is zz{batch}q{i}vv. I live near Brackfen{batch}mere{i}."
        for i in range(n)
    ]


def test_vocab_strings_do_not_grow_with_new_tokens(tagger):
    tagger.tag(_novel_texts(0))  # anything loaded lazily on first use is loaded now
    strings = len(tagger.nlp.vocab.strings)
    for batch in range(1, 6):
        tagger.tag(_novel_texts(batch))
    assert len(tagger.nlp.vocab.strings) == strings
    assert not tagger.nlp.vocab.in_memory_zone


def test_memory_zone_changes_no_finding(tagger):
    texts = [
        "Customer Ravi van der Linden called from 06-1234 5678 about order 5521.",
        "I live in Rotterdam, send it to Maria Lopez at maria.lopez@example.com please.",
        "Dr. Anneke Jansen, PhD will call back; she flew to London on Monday.",
        *_novel_texts(99, 5),
    ]
    groups = [TextGroup((t,), (("PERSON", "Maria Lopez"),) if i == 1 else ()) for i, t in enumerate(texts)]
    zoned = tagger.tag_groups(groups)
    # The same texts analysed outside any zone (the vocab then keeps their strings: a fresh tagger).
    plain = PiiTagger(PiiConfig())
    plain.nlp.memory_zone = _no_zone
    assert plain.tag_groups(groups) == zoned
    assert any(f.entity_type == "PERSON" for text in zoned for f in text[0])


class _NoZone:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _no_zone(*_args, **_kwargs):
    return _NoZone()


def test_threads_share_the_tagger_one_zone_at_a_time(tagger):
    expected = tagger.tag(_novel_texts(7, 10))
    results, errors = {}, []

    def work(n: int) -> None:
        try:
            results[n] = tagger.tag(_novel_texts(7, 10))
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(results[n] == expected for n in range(4))


def test_known_value_matcher_cache_is_bounded():
    assert known_value_matcher.cache_info().maxsize == 64
