"""PII tagging benchmark: ``python -m bench.pii`` (or ``make bench``).

On the same chat messages, in one run, it measures and prints messages per second for:

    (a) naive Presidio: AnalyzerEngine.analyze per message, default recognizers and full spaCy pipeline
    (b) spaCy tok2vec + NER alone (nlp.pipe): the ceiling for the model
    (c) ccpipe's tagging (PiiTagger.tag_groups): NER where a name can be, recognizers behind pre-checks
    (d) the whole batch pipeline end to end on chat transcripts (parse -> ... -> encrypted Parquet)

and the ratios c/a, c/b, d/b, with the recall of (a) and (c) on the planted PII side by side.
Presidio's default email recognizer would fetch the public suffix list; (a) uses the offline one.

Per-record cost (``--part cost``, issue 13), on a generated mix of every record type:

    (e) the PII engine's records per second per record type (CPU time, batches of 256 records as in
        TagPii), beside NER alone on the texts the engine sends to NER (its share of the cost), and the
        record's known values found by the shared matcher vs. one regex compiled per text and value
        (the code before issue 13), both measured here
    (f) password hashes per CPU second at the parameters in use (``ccpipe.crypto.hash_rate``), beside
        scrypt at N=2**14 (the cost used before) and at N=2**17 (OWASP's scrypt minimum)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
import time
from pathlib import Path

from ccpipe.pii.engine import PiiConfig, PiiTagger, TextGroup, load_ner, resolve_model
from ccpipe.types import Finding


def _messages(n_chats: int, seed: int, workdir: Path) -> tuple[list[dict], list[dict]]:
    from fixtures.generate import generate

    generate(workdir, seed=seed, n_tenants=8, n_calls=0, n_chats=n_chats, n_telemetry=0, n_registrations=0)
    chats = [json.loads(line) for line in (workdir / "input" / "chats.jsonl").read_text().splitlines()]
    truth = [json.loads(line) for line in (workdir / "truth.jsonl").read_text().splitlines()]
    return chats, [t for t in truth if t["start"] is not None]


def _recall(texts: dict[tuple[str, str], str], findings: dict[tuple[str, str], list[Finding]], truth) -> float:
    found = 0
    for t in truth:
        key = (t["record_id"], t["field"])
        covered = set()
        for f in findings.get(key, []):
            covered.update(range(f.start, f.end))
        found += all(i in covered for i in range(t["start"], t["end"]))
    return found / len(truth) if truth else 1.0


def _naive_presidio(model: str):
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from ccpipe.pii.recognizers.offline_email_recognizer import OfflineEmailRecognizer

    nlp_engine = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    ).create_engine()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=nlp_engine)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmailRecognizer())
    return AnalyzerEngine(nlp_engine=nlp_engine, registry=registry)


def reference_find_known_values(text: str, known, score: float = 1.0, case_sensitive: frozenset[str] = frozenset()):
    """find_known_values before issue 13 (a regex compiled per text and value): the baseline of (e)."""
    import re

    out = []
    for entity_type, value in known:
        needle = value.strip()
        if len(needle) < 3:
            continue
        flags = 0 if value in case_sensitive else re.IGNORECASE
        pattern = re.compile(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", flags)
        out.extend(Finding(entity_type, m.start(), m.end(), score) for m in pattern.finditer(text))
    return out


def _cost(args, work: Path) -> None:
    """(e) and (f): the PII engine per record type, and password hashing."""
    import hashlib
    import re

    from ccpipe import crypto
    from ccpipe.pii.engine import find_known_values, may_hold_name
    from ccpipe.pii.evaluate import read_records
    from ccpipe.policy import known_values
    from ccpipe.schemas import iter_free_text
    from fixtures.generate import generate

    scale = args.mix_scale
    generate(work / "mix", seed=args.seed, n_tenants=14, n_calls=200 * scale, n_chats=200 * scale,
             n_telemetry=300 * scale, n_registrations=None)
    records = read_records([str(work / "mix" / "input" / "*")])
    by_type: dict[str, list[TextGroup]] = {}
    for rec in records:
        fields = iter_free_text(rec["type"], rec)
        group = TextGroup(tuple(t for _, t in fields), tuple(known_values(rec["type"], rec)), rec.get("tenant_id", ""))
        by_type.setdefault(rec["type"], []).append(group)
    tagger = PiiTagger(PiiConfig(model=args.model))
    tagger.tag(["warm up John Smith on 06-1234 5678"])
    print()
    print(f"(e) PII engine on a generated mix ({len(records)} records), CPU seconds, batches of 256 records")
    print(f"{'record type':<18}{'records':>8}{'texts':>7}{'engine rec/s':>14}{'NER-alone rec/s':>17}"
          f"{'NER share':>11}")
    total_records = total_cpu = 0.0
    for rtype, groups in sorted(by_type.items()):
        texts = [t for g in groups for t in g.texts]
        start = time.process_time()
        for i in range(0, len(groups), 256):
            tagger.tag_groups(groups[i : i + 256])
        cpu = time.process_time() - start
        named = [t for t in texts if may_hold_name(t)]
        start = time.process_time()
        for _doc in tagger.nlp.pipe(named, batch_size=tagger.config.batch_size):
            pass
        ner_cpu = time.process_time() - start
        total_records, total_cpu = total_records + len(groups), total_cpu + cpu
        ner_rate = f"{len(groups) / ner_cpu:>17.0f}" if ner_cpu > 0.001 else f"{'(no NER)':>17}"
        print(f"{rtype:<18}{len(groups):>8}{len(texts):>7}{len(groups) / max(cpu, 1e-9):>14.0f}{ner_rate}"
              f"{ner_cpu / max(cpu, 1e-9):>11.0%}")
    print(f"{'all':<18}{int(total_records):>8}{'':>7}{total_records / total_cpu:>14.0f}")
    pairs = [(t, g.known) for groups in by_type.values() for g in groups for t in g.texts if g.known]
    for name, fn in (("known values, per-text regexes (before)", reference_find_known_values),
                     ("known values, shared matcher (now)", find_known_values)):
        re.purge()
        start = time.process_time()
        for text, known in pairs:
            fn(text, known)
        cpu = time.process_time() - start
        print(f"{name:<52}{len(pairs) / cpu:>9.0f} texts/s")

    seconds = args.hash_seconds
    params = crypto.PASSWORD_HASH
    rate = crypto.hash_rate(seconds)

    def scrypt_rate(n: int) -> float:
        count, start = 0, time.thread_time()
        while (elapsed := time.thread_time() - start) < seconds or count == 0:
            hashlib.scrypt(b"correct horse battery staple", salt=os.urandom(16), n=n, r=8, p=1, dklen=32,
                           maxmem=256 * n * 8 + 2**20)
            count += 1
        return count / elapsed

    print()
    print(f"(f) password hashing, one per registration (per CPU second of one core, {seconds:g} s each)")
    label = f"argon2id m={params.memory_kib} KiB t={params.time_cost} p={params.parallelism} (in use)"
    print(f"{label:<52}{rate:>9.1f} hashes/s")
    print(f"{'scrypt N=2**14 r=8 p=1 (before)':<52}{scrypt_rate(2**14):>9.1f} hashes/s")
    print(f"{'scrypt N=2**17 r=8 p=1 (OWASP scrypt minimum)':<52}{scrypt_rate(2**17):>9.1f} hashes/s")


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.pii", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=2000, help="conversations (about 4 messages each)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--model", default="en_core_web_sm")
    parser.add_argument("--workers", type=int, default=1, help="local workers for (d)")
    parser.add_argument("--naive-limit", type=int, default=1500, help="messages for (a) (it is slow), 0 = all")
    parser.add_argument("--part", choices=("all", "chat", "cost"), default="all",
                        help="chat: (a)-(d); cost: per-record cost (e)-(f); all: both")
    parser.add_argument("--mix-scale", type=int, default=1, help="(e): 200 calls, 200 chats, 300 telemetry times this")
    parser.add_argument("--hash-seconds", type=float, default=3.0, help="(f): seconds per hash measurement")
    args = parser.parse_args(argv)
    if args.mix_scale < 1:
        parser.error(f"--mix-scale {args.mix_scale!r} must be at least 1")
    if not 0 < args.hash_seconds <= 600:
        parser.error(f"--hash-seconds {args.hash_seconds!r} must be between 0 (excluded) and 600")
    work = Path(tempfile.mkdtemp(prefix="ccpipe-bench-"))
    if args.part == "cost":
        _cost(args, work)
        return 0
    chats, truth = _messages(args.chats, args.seed, work / "corpus")
    keys = [(c["record_id"], f"messages[{i}].text") for c in chats for i in range(len(c["messages"]))]
    texts = {k: m["text"] for k, m in zip(keys, (m for c in chats for m in c["messages"]), strict=True)}
    n = len(texts)
    avg = sum(len(t) for t in texts.values()) / n
    print(f"{n} chat messages in {len(chats)} conversations, {avg:.0f} characters on average; "
          f"{os.cpu_count()} cores; model {resolve_model(args.model)}")

    # (a) naive Presidio, one analyze() per message.
    naive = _naive_presidio(resolve_model(args.model))
    sample = keys[: args.naive_limit] if args.naive_limit else keys
    naive.analyze(text="warm up John Smith", language="en")
    start = time.perf_counter()
    naive_findings = {
        k: [Finding(r.entity_type, r.start, r.end, r.score) for r in naive.analyze(text=texts[k], language="en")]
        for k in sample
    }
    a = len(sample) / (time.perf_counter() - start)
    sample_keys = set(sample)
    sample_truth = [t for t in truth if (t["record_id"], t["field"]) in sample_keys]
    recall_a = _recall(texts, naive_findings, sample_truth)

    # (b) spaCy tok2vec + NER alone.
    nlp = load_ner(args.model)
    list(nlp.pipe(["warm up John Smith"]))
    start = time.perf_counter()
    for _doc in nlp.pipe(list(texts.values()), batch_size=128):
        pass
    b = n / (time.perf_counter() - start)

    # (c) ccpipe tagging, one group per conversation as in the pipeline.
    tagger = PiiTagger(PiiConfig(model=args.model))
    tagger.tag(["warm up John Smith"])
    groups = [TextGroup(tuple(m["text"] for m in c["messages"]), (), c["tenant_id"]) for c in chats]
    start = time.perf_counter()
    results = tagger.tag_groups(groups)
    c_rate = n / (time.perf_counter() - start)
    ours = {k: list(f) for k, f in zip(keys, (f for g in results for f in g), strict=True)}
    recall_c_sample = _recall(texts, {k: ours[k] for k in sample}, sample_truth)
    recall_c = _recall(texts, ours, truth)

    # (c') the same, only on messages that need NER (a capitalised non-sentence word): no skipping helps.
    from ccpipe.pii.engine import may_hold_name

    named = [t for t in texts.values() if may_hold_name(t)]
    start = time.perf_counter()
    for _doc in nlp.pipe(named, batch_size=128):
        pass
    b_named = len(named) / (time.perf_counter() - start)
    start = time.perf_counter()
    tagger.tag_groups([TextGroup((t,)) for t in named])
    c_named = len(named) / (time.perf_counter() - start)

    # (d) the batch pipeline end to end (process start-up excluded, model load and Beam included).
    from ccpipe.keystore import KeystoreConfig
    from ccpipe.tenants import load_tenants
    from pipelines.batch import BatchConfig, pipeline_options, run
    from transforms.route import SinkConfig

    os.environ.setdefault("CCPIPE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    config = BatchConfig(
        inputs=(str(work / "corpus" / "input" / "chats.jsonl"),),
        tenants=tuple(load_tenants(work / "corpus" / "tenants.yaml").values()),
        sinks=SinkConfig(default_root=str(work / "out")),
        keystore=KeystoreConfig(path=str(work / "home" / "ks.db"), master_key_file=str(work / "home" / "mk")),
        run_id="bench",
        pii=PiiConfig(model=args.model),
    )
    start = time.perf_counter()
    manifest = run(config, pipeline_options("FnApiRunner", args.workers))
    d_seconds = time.perf_counter() - start
    messages_written = sum(per.get("chat_messages", 0) for per in manifest["rows_written_by_region"].values())
    d = messages_written / d_seconds

    print()
    print(f"{'':<52}{'msgs/s':>9}{'recall':>9}")
    print(f"{'(a) naive Presidio analyze() per message':<52}{a:>9.0f}{recall_a:>9.4f}   ({len(sample)} msgs)")
    print(f"{'(b) spaCy tok2vec+NER alone, nlp.pipe':<52}{b:>9.0f}{'':>9}")
    print(f"{'(c) ccpipe tagging':<52}{c_rate:>9.0f}{recall_c_sample:>9.4f}   (all: {recall_c:.4f})")
    print(f"{'(b_) NER alone, only messages that need NER':<52}{b_named:>9.0f}{'':>9}   ({len(named)} msgs)")
    print(f"{'(c_) ccpipe tagging, only messages that need NER':<52}{c_named:>9.0f}{'':>9}   "
          f"(c_/b_ = {c_named / b_named:.2f})")
    print(f"{'(d) batch pipeline end to end, ' + str(args.workers) + ' worker(s)':<52}{d:>9.0f}{'':>9}"
          f"   ({messages_written} messages in {d_seconds:.1f} s, reconciled={manifest['reconciled']})")
    print()
    print(f"c/a = {c_rate / a:.2f}   c/b = {c_rate / b:.2f}   d/b = {d / b:.2f}")
    if args.part == "all":
        _cost(args, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
