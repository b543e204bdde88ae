"""NER with BLIS against NER with numpy (OpenBLAS): ``python -m bench.ner_ops``.

spaCy's layers multiply matrices with BLIS unless told otherwise. On a CPU that BLIS does not
recognise (a virtual machine that hides the CPU model) BLIS picks its generic reference kernel;
``BLIS_ARCH_DEBUG=1`` prints which one it chose. ``ccpipe.pii.engine.load_ner`` builds the model with
numpy's ops instead. In one run, on the labelled development sets of ``tests/data/dev`` (sentences
from presidio-evaluator, not written here), this prints texts per second both ways and whether
every entity (start, end, label) is the same.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _texts(limit: int) -> list[str]:
    from ccpipe.pii.evaluate import read_labelled

    texts = []
    for path in sorted((ROOT / "tests" / "data" / "dev").glob("*.jsonl")):
        records, _truth = read_labelled(str(path))
        texts += [m["text"] for record in records for m in record["messages"]]
    return texts[:limit]


def _run(nlp, texts: list[str], repeats: int) -> tuple[float, list]:
    ents = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts, batch_size=128)]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _doc in nlp.pipe(texts, batch_size=128):
            pass
        best = min(best, time.perf_counter() - start)
    return len(texts) / best, ents


def main(argv: list[str] | None = None) -> int:
    """Load the model both ways, time each on the same texts, and compare their entities."""
    import spacy

    from ccpipe.pii.engine import load_ner, resolve_model

    parser = argparse.ArgumentParser(prog="python -m bench.ner_ops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="en_core_web_sm")
    parser.add_argument("--texts", type=int, default=6000, help="how many development-set texts")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes each; the best is reported")
    args = parser.parse_args(argv)
    texts = _texts(args.texts)
    blis = spacy.load(resolve_model(args.model), exclude=["tagger", "parser", "attribute_ruler", "lemmatizer",
                                                          "senter", "tok2vec"])
    numpy_ops = load_ner(args.model)
    rate_blis, ents_blis = _run(blis, texts, args.repeats)
    rate_numpy, ents_numpy = _run(numpy_ops, texts, args.repeats)
    differ = sum(a != b for a, b in zip(ents_blis, ents_numpy, strict=True))
    print(f"{len(texts)} texts from tests/data/dev, model {args.model}, best of {args.repeats}")
    print(f"  NER with BLIS (spaCy's default)      {rate_blis:8.0f} texts/s")
    print(f"  NER with numpy ops (ccpipe)          {rate_numpy:8.0f} texts/s   {rate_numpy / rate_blis:.2f}x")
    print(f"  texts whose entities differ: {differ} of {len(texts)}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
