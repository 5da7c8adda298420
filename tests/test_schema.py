"""The shared schema: Example's flat views and round trip, and RawDataError's message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xalign_utils.schema import Example, RawDataError


def nli_example(**changes) -> Example:
    fields = dict(
        id="e1",
        dataset="esnli",
        split="test",
        label="entailment",
        segments={"premise": "A dog runs .", "hypothesis": "An animal moves"},
        words={"premise": ["A", "dog", "runs", "."], "hypothesis": ["An", "animal", "moves"]},
        rationale={"premise": [None, 1, 0, None], "hypothesis": [0, 1, 1]},
        annotators=[{"premise": [0, 1, 0, 0], "hypothesis": [0, 1, 1]}],
        explanations=["A dog is an animal."],
        meta={"annotation_scope": "full", "source_index": 7},
    )
    return Example(**{**fields, **changes})


def test_flat_views_follow_the_segment_order():
    ex = nli_example()
    assert ex.flat_words() == ["A", "dog", "runs", ".", "An", "animal", "moves"]
    assert ex.flat_segments() == ["premise"] * 4 + ["hypothesis"] * 3
    assert ex.flat_rationale() == [None, 1, 0, None, 0, 1, 1]
    assert nli_example(rationale=None).flat_rationale() == [None] * 7


def test_round_trip_through_a_dict_and_json():
    ex = nli_example()
    assert Example.from_dict(ex.to_dict()) == ex
    assert Example.from_dict(json.loads(json.dumps(ex.to_dict()))) == ex
    bare = Example("s1", "sst2", "dev", "positive", {"text": "fine"}, {"text": ["fine"]})
    assert Example.from_dict(bare.to_dict()) == bare
    with pytest.raises(TypeError):
        Example.from_dict({**ex.to_dict(), "unknown_field": 1})


def test_raw_data_error_names_file_line_and_field():
    err = RawDataError(Path("esnli/labels.test"), 12, "gold_label", "unknown label 'maybe'")
    assert str(err) == "esnli/labels.test, line 12, field 'gold_label': unknown label 'maybe'"
    assert (err.path, err.line, err.field) == (Path("esnli/labels.test"), 12, "gold_label")
    assert isinstance(err, ValueError)
    assert str(RawDataError("x.csv", None, None, "empty file")) == "x.csv: empty file"
