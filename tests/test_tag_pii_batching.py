"""TagPii's batch grouping streams over a shard group; SplitTagged never drops a plain value.

Regression (review, TagPii memory): ``_batches`` did ``sorted(records)`` over a whole shard group (1/64
of the input's raw payloads in one worker: memory grew with the input). Now it cuts batches as the
group's iterable is read; findings do not depend on which records share a batch (checked on a
fixture corpus: byte-identical row content) and the writer sorts output rows by key anyway.

Regression (review, SplitTagged): ``SplitTagged(tags)`` without ``main`` dropped plain values silently.
"""

from __future__ import annotations

from types import SimpleNamespace

import apache_beam as beam
import pytest
from conftest import local_test_pipeline

from transforms.route import SideOutput, SplitTagged, _select
from transforms.tag_pii import _batches


def _routed(i: int) -> SimpleNamespace:
    """Stands in for a RoutedRecord (what the old sort keyed on: record.tenant_id, record.record_id)."""
    return SimpleNamespace(record=SimpleNamespace(tenant_id="t-a", record_id=f"r-{i:02d}"))


def _counting(records: list, pulled: list[int]):
    for record in records:
        pulled[0] += 1
        yield record


def test_batches_are_cut_lazily_from_the_group_iterable():
    records = [_routed(i) for i in range(10)]
    pulled = [0]
    batches = _batches((7, _counting(records, pulled)), max_batch=4)
    assert pulled == [0]
    assert next(batches) == records[:4]
    assert pulled == [4]  # no more than one batch pulled before it is handed on (was: the whole group)
    assert next(batches) == records[4:8]
    assert pulled == [8]
    assert list(batches) == [records[8:]]
    assert pulled == [10]


def test_batches_keep_every_record_once_and_respect_the_cap():
    for n, cap in ((0, 3), (1, 3), (3, 3), (7, 3), (5, 1)):
        records = [_routed(i) for i in range(n)]
        batches = list(_batches((0, iter(records)), max_batch=cap))
        assert [x for b in batches for x in b] == records
        assert all(1 <= len(b) <= cap for b in batches)
        assert len(batches) == -(-n // cap)


class _Emit(beam.DoFn):
    def process(self, n):
        yield SideOutput("odd", n) if n % 2 else n


def test_split_tagged_without_main_fails_on_a_plain_value():
    with pytest.raises(Exception, match="a plain int value reached SplitTagged without a main output"):
        with local_test_pipeline() as p:
            split = p | beam.Create([1, 2, 3]) | beam.ParDo(_Emit()) | SplitTagged(("odd",))
            _ = split["odd"] | beam.Map(lambda n: n)
    # The message names the type, never the value (a payload).
    with pytest.raises(ValueError) as err:
        list(_select("secret payload", "odd", frozenset({"odd"}), has_main=False))
    assert str(err.value) == (
        "a plain str value reached SplitTagged without a main output (tags ['odd']): "
        "wrap it in SideOutput(tag, value) or give main"
    )


def test_split_tagged_without_main_passes_tagged_values():
    from apache_beam.testing.util import assert_that, equal_to

    with local_test_pipeline() as p:
        split = p | beam.Create([1, 3, 5]) | beam.ParDo(_Emit()) | SplitTagged(("odd",))
        assert_that(split["odd"], equal_to([1, 3, 5]))
