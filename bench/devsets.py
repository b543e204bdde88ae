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


if __name__ == "__main__":
    main()
