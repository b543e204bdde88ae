"""Build the PII development sets from public generators this repository did not write.

The sets are labelled sentences from `presidio-evaluator` (MIT): its 200-odd customer-service
sentence templates (``raw_data/templates.txt``) filled by its own providers and its 3,000
FakeNameGenerator records, plus Faker's per-locale providers for the multi-country set. Nothing
here is hand-written: this script only picks seeds, sizes and locales. presidio-evaluator pulls in
transformers and pandas, so it is not a ccpipe dependency; run this in a scratch venv::

    python3 -m venv /tmp/pe && /tmp/pe/bin/pip install presidio-evaluator==0.3.2
    /tmp/pe/bin/python bench/devsets.py --out tests/data/dev

presidio-evaluator does not seed every draw, so a re-run writes a different (equally valid) sample;
the committed files are the reference sets. Each output line is one labelled text in the format
``ccpipe eval-pii --labelled`` reads::

    {"id": "pe_en-0001", "text": "...", "spans": [{"start": 10, "end": 22, "label": "PERSON"}]}

Sets (report each separately; tune on ``pe_en`` only, check on the others):

* ``pe_en``: en_US, 5% lower-cased (presidio-evaluator's default), seed 11.
* ``pe_en_check``: the same generator with another seed (29): a second draw of values.
* ``pe_lower``: every sentence lower-cased (chat without capitals), seed 13.
* ``pe_multi``: the templates filled with names, addresses and phone numbers of 16 Faker locales.
* ``pe_chat``: conversations of four to six of the generator's sentences as alternating customer
  and agent messages, half of the conversations lower-cased (seed 31).
* ``pe_noisy``: the sentences as people type them in chat and social media: lower case, most
  punctuation dropped, "you" as "u", doubled letters (seed 37). The noise is this script's; the
  sentences and values are the generator's.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

MULTI_LOCALES = ["hu_HU", "fi_FI", "ja_JP", "el_GR", "de_DE", "fr_FR", "pt_BR", "nl_NL", "en_AU", "en_GB",
                 "es_ES", "it_IT", "pl_PL", "tr_TR", "en_IN", "sv_SE"]


def _dump(samples, name: str, out: Path, lower: bool = False) -> int:
    path = out / f"{name}.jsonl"
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for i, s in enumerate(samples):
            # presidio-evaluator 0.3.2 lower-cases the span values but not the text: do it here,
            # where lower-casing keeps every offset.
            if lower and len(s.full_text.lower()) == len(s.full_text):
                s.full_text = s.full_text.lower()
            spans = [{"start": sp.start_position, "end": sp.end_position, "label": sp.entity_type}
                     for sp in s.spans]
            for sp in spans:
                assert 0 <= sp["start"] < sp["end"] <= len(s.full_text)
            fh.write(json.dumps({"id": f"{name}-{i:04d}", "text": s.full_text, "spans": spans},
                                ensure_ascii=False) + "\n")
            n += 1
    return n


def _noisy(text: str, spans: list[dict], rng: random.Random) -> tuple[str, list[dict]]:
    """Chat-style noise outside the labelled spans; spans are moved with the text."""
    inside = [False] * len(text)
    for sp in spans:
        for k in range(sp["start"], sp["end"]):
            inside[k] = True
    out: list[str] = []
    new_pos = []
    i = 0
    while i < len(text):
        new_pos.append(len("".join(out)))
        ch = text[i]
        if not inside[i] and ch in ".,!?;'" and rng.random() < 0.7:
            i += 1
            continue
        if not inside[i] and text[i : i + 3].lower() == "you" and (i + 3 == len(text) or not text[i + 3].isalpha()) \
                and (i == 0 or not text[i - 1].isalpha()):
            out.append("u")
            new_pos += [len("".join(out))] * 2
            i += 3
            continue
        out.append(ch + (ch if not inside[i] and ch.isalpha() and rng.random() < 0.015 else ""))
        i += 1
    new_pos.append(len("".join(out)))
    noisy = "".join(out).lower()
    moved = [{**sp, "start": new_pos[sp["start"]], "end": new_pos[sp["end"]]} for sp in spans]
    return noisy, [sp for sp in moved if sp["start"] < sp["end"]]


def _spans(sample) -> list[dict]:
    return [{"start": sp.start_position, "end": sp.end_position, "label": sp.entity_type} for sp in sample.spans]


def _latin(faker, attr_romanized: str, attr: str) -> str:
    fn = getattr(faker, attr_romanized, None)
    return fn() if fn else getattr(faker, attr)()


def _multi_records(n: int, seed: int) -> list[dict]:
    from faker import Faker

    out = []
    for i in range(n):
        locale = MULTI_LOCALES[i % len(MULTI_LOCALES)]
        f = Faker(locale)
        f.seed_instance(seed + i)
        first = _latin(f, "first_romanized_name", "first_name")
        last = _latin(f, "last_romanized_name", "last_name")
        if locale == "el_GR":  # Greek script names: use Faker's en_US transliteration-free fallback
            g = Faker("el_GR")
            g.seed_instance(seed + i)
            first, last = g.first_name(), g.last_name()
        try:
            street = f.street_address()
        except AttributeError:
            street = Faker("en_US").street_address()
        out.append({
            "first_name": first, "last_name": last, "person": f"{first} {last}",
            "name": f"{first} {last}", "street_name": street, "phone_number": f.phone_number(),
            "city": f.city(), "country": f.current_country() if hasattr(f, "current_country") else "",
            "postcode": f.postcode(), "zipcode": f.postcode(), "address": f.address(),
            "email": f.email(), "iban": f.iban(), "date_of_birth": f.date_of_birth().strftime("%d/%m/%Y"),
        })
    return out


def main() -> None:
    """Write the sets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="tests/data/dev")
    parser.add_argument("--size", type=int, default=1500)
    args = parser.parse_args()
    from presidio_evaluator.data_generator import PresidioSentenceFaker

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plans = [("pe_en", 0.05, 11, args.size, None), ("pe_en_check", 0.05, 29, args.size, None),
             ("pe_lower", 1.0, 13, args.size // 3, None), ("pe_multi", 0.05, 17, args.size // 2, "multi")]
    for name, lower, seed, size, records in plans:
        random.seed(seed)
        kwargs = {"base_records": _multi_records(400, seed)} if records == "multi" else {}
        faker = PresidioSentenceFaker("en_US", lower_case_ratio=lower, random_seed=seed, **kwargs)
        samples = faker.generate_new_fake_sentences(size)
        print(name, _dump(samples, name, out, lower=lower == 1.0))
    # Conversations and noisy text, from further draws of the same generator.
    faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, random_seed=31)
    samples = faker.generate_new_fake_sentences(args.size)
    rng = random.Random(31)
    with (out / "pe_chat.jsonl").open("w", encoding="utf-8") as fh:
        i = n = 0
        while i < len(samples):
            size = rng.randint(4, 6)
            lower = rng.random() < 0.5
            turns = []
            for seq, sample in enumerate(samples[i : i + size]):
                text = sample.full_text.lower() if lower and len(sample.full_text.lower()) == len(sample.full_text) \
                    else sample.full_text
                turns.append({"sender": "customer" if seq % 2 == 0 else "agent", "text": text, "spans": _spans(sample)})
            fh.write(json.dumps({"id": f"pe_chat-{n:04d}", "messages": turns}, ensure_ascii=False) + "\n")
            i += size
            n += 1
    print("pe_chat", n)
    faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.0, random_seed=37)
    samples = faker.generate_new_fake_sentences(args.size // 2)
    rng = random.Random(37)
    with (out / "pe_noisy.jsonl").open("w", encoding="utf-8") as fh:
        for i, sample in enumerate(samples):
            text, spans = _noisy(sample.full_text, _spans(sample), rng)
            fh.write(json.dumps({"id": f"pe_noisy-{i:04d}", "text": text, "spans": spans}, ensure_ascii=False) + "\n")
    print("pe_noisy", len(samples))


if __name__ == "__main__":
    main()
