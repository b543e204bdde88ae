"""Each recognizer on what it must find and what it must leave alone; the engine's context rules."""

from __future__ import annotations

import pytest

from ccpipe.errors import ConfigError
from ccpipe.pii.engine import PiiConfig, PiiTagger, TenantPiiPolicy, TextGroup, may_hold_name, redact
from ccpipe.pii.recognizers import load_recognizers
from ccpipe.pii.recognizers.luhn_card_recognizer import luhn_valid


@pytest.fixture(scope="module")
def tagger():
    return PiiTagger(
        PiiConfig(
            allow=("Fiber Max",),
            tenants=(TenantPiiPolicy("t-acme", allow=("Rosa",), id_patterns=(("order", r"ORD-\d{6}"),)),),
        )
    )


def spans(tagger, text, tenant=""):
    [[findings]] = tagger.tag_groups([TextGroup((text,), (), tenant)])
    return [(f.entity_type, text[f.start : f.end]) for f in findings]


@pytest.mark.parametrize(
    "card",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111.1111.1111.1111", "4111111111111111", "3782 822463 10005",
     "6011 0009 9013 9424", "5425233430109903"],
)
def test_every_valid_card_is_found(tagger, card):
    assert luhn_valid(card.replace(" ", "").replace("-", "").replace(".", ""))
    assert spans(tagger, f"ok here it is {card} thanks") == [("CREDIT_CARD", card)]


def test_card_shaped_or_cued_invalid_numbers_are_redacted_but_not_others(tagger):
    assert spans(tagger, "sorry, 4716 2210 9876 5439") == [("CREDIT_CARD", "4716 2210 9876 5439")]
    assert spans(tagger, "my card 4716221098765439") == [("CREDIT_CARD", "4716221098765439")]
    # Not a card (no card word, not card-shaped, Luhn fails): a tracking number, redacted as an identifier.
    assert spans(tagger, "tracking 4716221098765439 shipped") == [("ACCOUNT_ID", "4716221098765439")]
    assert spans(tagger, "parcel 4716221098765439 shipped") == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("call me on 06-1234 5678", "06-1234 5678"),
        ("bel +31 20 794 1234 graag", "+31 20 794 1234"),
        ("ring me on 07700 900461 please", "07700 900461"),
        ("my cell (312) 555-0187 ok", "(312) 555-0187"),
        ("number 415.555.0199", "415.555.0199"),
        ("handphone 9123 4567", "9123 4567"),
        ("contact 5123 4567", "5123 4567"),
        ("mobile 0412 345 678", "0412 345 678"),
        ("tel (11) 98765-4321", "(11) 98765-4321"),
        ("whatsapp +55 21 99876-5432", "+55 21 99876-5432"),
    ],
)
def test_phone_numbers_of_all_seven_regions(tagger, text, number):
    assert ("PHONE_NUMBER", number) in spans(tagger, text)


@pytest.mark.parametrize(
    "text",
    [
        "the call went for 45 minutes and I was on hold for 20 of them",
        "I see it since 14:32 today, ticket 2026-10-05",
        "speed test shows 480 Mbps, plan Fiber Max 500",
        "it arrived on 2026-10-05 at 09:15",
        "the total was $89.99 for 3 months",
    ],
)
def test_no_false_positives_on_numbers_durations_times_products(tagger, text):
    assert spans(tagger, text) == []


def test_dtmf_pins_and_spoken_digits(tagger):
    assert spans(tagger, "I pressed 8 3 1 9 but it said invalid") == [("DTMF", "8 3 1 9")]
    assert spans(tagger, "my PIN is 4821") == [("DTMF", "4821")]
    assert spans(tagger, "it's seven seven four one") == [("DTMF", "seven seven four one")]
    assert spans(tagger, "entered 772019#") == [("DTMF", "772019#")]


@pytest.mark.parametrize(
    "address",
    ["17066 Heather Grove Apt. 915", "Kerkstraat 21", "Rua das Palmeiras, 245", "Unit 4, 17 Banksia Street",
     "Blk 123 Ang Mo Kio Avenue 3", "Flat 2, 88 Victoria Road"],
)
def test_street_addresses(tagger, address):
    assert spans(tagger, f"please send it to {address} today") in ([("ADDRESS", address)],
                                                                   [("ADDRESS", address + " today")])


def test_network_identifiers_usernames_agents(tagger):
    assert spans(tagger, "REGISTER from 10.2.3.4 device 00-1A-2B-3C-4D-5E user jsmith42 ok") == [
        ("IP_ADDRESS", "10.2.3.4"), ("MAC_ADDRESS", "00-1A-2B-3C-4D-5E"), ("USERNAME", "jsmith42")]
    assert spans(tagger, "whitelist 2001:db8:85a3::8a2e:370:7334 please") == [
        ("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334")]
    assert spans(tagger, "escalated by agt-55512") == [("AGENT_ID", "agt-55512")]
    assert spans(tagger, "mail me at a.b@example.co.uk") == [("EMAIL_ADDRESS", "a.b@example.co.uk")]


def test_names_ner_misses_are_found_from_phrases(tagger):
    assert spans(tagger, "yeah my name is carlos mendez and I got charged twice") == [("PERSON", "carlos mendez")]
    assert spans(tagger, "Thanks Brett Jones, I have updated your ticket.") == [("PERSON", "Brett Jones")]
    assert spans(tagger, "Customer Ravi van der Linden-Visser asked about billing") == [
        ("PERSON", "Ravi van der Linden-Visser")]
    assert spans(tagger, "my name is Dr. Vitor da Rosa. How") == [("PERSON", "Dr. Vitor da Rosa")]
    assert spans(tagger, "I'm getting blocked when I'm outside now") == []


def test_a_name_given_once_is_redacted_in_every_message(tagger):
    texts = ("Hi, this is Maria Lopez calling.", "Thanks Maria, I will check.", "ok, maria here again")
    [findings] = tagger.tag_groups([TextGroup(texts)])
    assert [redact(t, f) for t, f in zip(texts, findings, strict=True)] == [
        "Hi, this is <PERSON> calling.", "Thanks <PERSON>, I will check.", "ok, <PERSON> here again"]


def test_allow_lists_and_tenant_id_patterns(tagger):
    assert spans(tagger, "I'm on Fiber Max, order ORD-123456", tenant="t-acme") == [("ACCOUNT_ID", "ORD-123456")]
    # Other tenants: the order id is still redacted (an identifier read out next to its cue word).
    assert spans(tagger, "order ORD-123456", tenant="t-other") == [("ACCOUNT_ID", "ORD-123456")]
    assert spans(tagger, "ORD-123456", tenant="t-other") == []
    assert ("PERSON", "Rosa") not in spans(tagger, "Thanks Rosa, bye.", tenant="t-acme")
    assert spans(tagger, "Thanks Rosa, bye.", tenant="t-other") == [("PERSON", "Rosa")]


def test_ner_is_skipped_where_no_name_can_be():
    assert not may_hold_name("Welcome! Please describe your issue and an agent will join shortly.")
    assert not may_hold_name("ok thanks, bye")
    assert may_hold_name("Thanks Maria, bye")


def test_registry_and_config_errors(tmp_path):
    names = [type(r).__name__ for r in load_recognizers()]
    assert names == ["OfflineEmailRecognizer", "LuhnCardRecognizer", "RegionalPhoneRecognizer", "CcpipeIpRecognizer",
                     "CcpipeMacRecognizer", "DtmfPinRecognizer", "StreetAddressRecognizer", "AgentIdRecognizer",
                     "UsernameRecognizer", "SelfIntroductionRecognizer", "AddressBlockRecognizer",
                     "InternationalPhoneRecognizer", "CcpipeIbanRecognizer", "NationalIdRecognizer",
                     "DateOfBirthRecognizer", "ReferenceCodeRecognizer", "SpokenEmailRecognizer",
                     "NameGazetteerRecognizer"]
    bad = tmp_path / "r.yaml"
    bad.write_text("recognizers:\n  - {class: 'nope.module:Nope'}\n")
    with pytest.raises(ConfigError, match="cannot be imported"):
        load_recognizers(bad)
    with pytest.raises(ConfigError, match="not a valid regex"):
        TenantPiiPolicy("t", id_patterns=(("x", "("),))
    config = tmp_path / "pii.yaml"
    config.write_text("allow: [Fiber Max]\ntenants:\n  t-acme:\n    allow: [Rosa]\n"
                      "    id_patterns: [{name: order, regex: 'ORD-\\d{6}'}]\n")
    loaded = PiiConfig.from_yaml(str(config))
    assert loaded.allow == ("Fiber Max",)
    assert loaded.tenants == (TenantPiiPolicy("t-acme", ("Rosa",), (("order", r"ORD-\d{6}"),)),)
