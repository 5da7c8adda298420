"""Loaders against the real shared files and against broken copies of them."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from xalign_utils import data
from xalign_utils.data import RawDataError


@pytest.mark.parametrize(("name", "split"), list(data.PUBLISHED_COUNTS))
def test_row_counts_match_the_published_ones(raw_dir, name, split):
    examples = data.load(name, split, raw_dir=raw_dir)
    assert len(examples) == data.PUBLISHED_COUNTS[(name, split)]
    assert len({ex.id for ex in examples}) == len(examples)
    if name in data.LABELS or name == "esnli_highlights":
        labels = data.LABELS["esnli" if name.startswith("esnli") else name]
        assert {ex.label for ex in examples} <= set(labels)
    for ex in examples[:50]:
        assert list(ex.words) == list(ex.segments)
        if ex.rationale is not None:
            assert {k: len(v) for k, v in ex.rationale.items()} == {
                k: len(v) for k, v in ex.words.items()
            }


def test_esnli_hypothesis_only_premise_is_unannotated_not_negative(raw_dir):
    rows = data.load_esnli_highlights("test", raw_dir=raw_dir)
    hyp_only = [ex for ex in rows if ex.meta["annotation_scope"] == "hypothesis_only"]
    full = [ex for ex in rows if ex.meta["annotation_scope"] == "full"]
    assert hyp_only and full
    assert all(v is None for ex in hyp_only for v in ex.rationale["premise"])
    assert all(v in (0, 1) for ex in hyp_only for v in ex.rationale["hypothesis"])
    assert all(v in (0, 1) for ex in full for v in ex.flat_rationale())


def test_esnli_highlights_survive_punctuation_and_retokenisation():
    assert data.align_highlights(
        "looking threw new medical manuals.".split(), "looking threw *new* *medical* *manuals.*"
    ) == [0, 0, 1, 1, 1]
    # the marked copy splits "t-shirt" into three tokens
    words = "He wears a t-shirt and shorts .".split()
    assert data.align_highlights(words, "He wears a *t* *-* *shirt* and shorts .") == [
        0,
        0,
        0,
        1,
        0,
        0,
        0,
    ]
    words = "a spoon with `` HELP ME '' on it".split()
    assert data.align_highlights(words, "a *spoon* with ' HELP *ME* ' on it") == [
        0,
        1,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
    ]
    # a star inside a word is not a highlight
    assert data.align_highlights(["a*b", "c"], "a*b *c*") == [0, 1]


def test_combine_masks_majority_and_union():
    masks = [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert data.combine_masks(masks, "union") == [1, 1, 0]
    assert data.combine_masks(masks, "majority") == [1, 0, 0]
    assert data.combine_masks([[1, 0], [0, 1]], "majority") == [1, 1]  # ties count (≥ half)
    with pytest.raises(ValueError, match="rule"):
        data.combine_masks(masks, "mean")


def test_hatexplain_majority_label_and_rationales(raw_dir):
    rows = data.load_hatexplain("test", raw_dir=raw_dir)
    normal = [ex for ex in rows if ex.label == "normal"]
    assert all(ex.annotators == [] and set(ex.flat_rationale()) <= {0} for ex in normal[:100])
    hateful = [ex for ex in rows if ex.label == "hatespeech" and ex.annotators]
    ex = hateful[0]
    assert ex.flat_rationale() == data.combine_masks([a["text"] for a in ex.annotators], "majority")


def test_movies_tags_and_the_untagged_review(raw_dir):
    rows = {ex.id: ex for ex in data.load_movies("all", raw_dir=raw_dir)}
    assert rows["movies-pos-161"].rationale is None and rows["movies-pos-161"].meta["missing_tags"]
    assert rows["movies-neg-950"].rationale is None
    ex = rows["movies-neg-000"]
    assert "<NEG>" not in ex.segments["text"] and sum(ex.flat_rationale()) > 0


def test_tagged_review_parser_errors_name_the_problem():
    words, mask = data.parse_tagged_review("a <POS> good\nfilm </POS> indeed")
    assert words == ["a", "good", "film", "indeed"] and mask == [0, 1, 1, 0]
    with pytest.raises(RawDataError, match="never closed"):
        data.parse_tagged_review("a <POS> good", "r.txt")
    with pytest.raises(RawDataError, match="line 2"):
        data.parse_tagged_review("a\n</NEG> good", "r.txt")


def test_truncated_csv_names_file_and_line(scratch_raw):
    root = scratch_raw("esnli", ["esnli_test_highlights.csv"])
    path = root / "esnli" / "esnli_test_highlights.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:10]) + ",".join(lines[10].split(",")[:5]))  # cut mid-row
    with pytest.raises(
        RawDataError, match=r"esnli_test_highlights\.csv, line 11.*wrong number of fields"
    ):
        data.load_esnli_highlights("test", raw_dir=root)


def test_bad_label_names_file_line_and_field(scratch_raw):
    root = scratch_raw("sst2", ["dev.tsv"])
    path = root / "sst2" / "dev.tsv"
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit("\t", 1)[0] + "\t7"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RawDataError, match=r"dev\.tsv, line 6, field 'label'"):
        data.load_sst2("dev", raw_dir=root)


def test_bad_esnli_label(scratch_raw):
    files = [
        f"{n}.dev"
        for n in ("s1", "s2", "labels", "preproc1_expl_1", "preproc1_expl_2", "preproc1_expl_3")
    ]
    root = scratch_raw("esnli", files)
    path = root / "esnli" / "labels.dev"
    lines = path.read_text().splitlines()
    lines[2] = "entails"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RawDataError, match=r"labels\.dev, line 3, field 'label'.*'entails'"):
        data.load_esnli("dev", raw_dir=root)


def test_mismatched_parallel_files(scratch_raw):
    files = [
        f"{n}.test"
        for n in ("s1", "s2", "labels", "preproc1_expl_1", "preproc1_expl_2", "preproc1_expl_3")
    ]
    root = scratch_raw("esnli", files)
    path = root / "esnli" / "s2.test"
    path.write_text("\n".join(path.read_text().splitlines()[:-10]) + "\n")
    with pytest.raises(RawDataError, match=r"s2\.test.*different lengths"):
        data.load_esnli("test", raw_dir=root)


def test_missing_final_newline_is_not_a_mismatch(raw_dir):
    # preproc1_expl_*.test have no trailing newline in the published files
    assert (raw_dir / "esnli" / "preproc1_expl_1.test").read_bytes()[-1:] != b"\n"
    assert len(data.load_esnli("test", raw_dir=raw_dir)) == 9824


def test_malformed_json_line(scratch_raw, raw_dir):
    root = scratch_raw("fever", ["val.jsonl"])
    (root / "fever" / "docs").symlink_to(raw_dir / "fever" / "docs")
    path = root / "fever" / "val.jsonl"
    lines = path.read_text().splitlines()[:20]
    lines[11] = lines[11][:40]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RawDataError, match=r"val\.jsonl, line 12: malformed JSON"):
        data.load_fever("val", raw_dir=root)


def test_fever_span_outside_document(scratch_raw, raw_dir):
    root = scratch_raw("fever", ["val.jsonl"])
    (root / "fever" / "docs").symlink_to(raw_dir / "fever" / "docs")
    path = root / "fever" / "val.jsonl"
    rec = json.loads(path.read_text().splitlines()[0])
    rec["evidences"][0][0]["end_token"] = 10**6
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(RawDataError, match=r"line 1, field 'evidences'"):
        data.load_fever("val", raw_dir=root)


def test_hatexplain_literal_and_codes(scratch_raw):
    root = scratch_raw("hatexplain", ["val.csv"])
    path = root / "hatexplain" / "val.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1].replace("'label': [", "'label': [9, ", 1))
    with pytest.raises(RawDataError, match=r"val\.csv, line 2, field 'annotators'"):
        data.load_hatexplain("val", raw_dir=root)
    path.write_text(lines[0] + lines[1].replace("'label'", "__import__('os')", 1))
    with pytest.raises(RawDataError, match="not a Python literal"):
        data.load_hatexplain("val", raw_dir=root)


def test_missing_dataset_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="XALIGN_RAW_DATA"):
        data.load_sst2("dev", raw_dir=tmp_path)


def test_stratified_sample_is_seeded_and_keeps_proportions(raw_dir):
    pool = data.load_sst2("dev", raw_dir=raw_dir)
    a = data.stratified_sample(pool, 100, seed=3)
    assert [ex.id for ex in a] == [ex.id for ex in data.stratified_sample(pool, 100, seed=3)]
    assert [ex.id for ex in a] != [ex.id for ex in data.stratified_sample(pool, 100, seed=4)]
    counts = Counter(ex.label for ex in a)
    assert abs(counts["positive"] - 51) <= 2


def test_truncate_counts_lost_words_and_rationale():
    ex = data.make_synthetic(1, seed=0, length=12)[0]
    pos = ex.meta["trigger_position"]
    short = data.truncate(ex, max(pos, 1))
    assert len(short.flat_words()) == max(pos, 1)
    assert short.meta["truncated_words"] == 12 - max(pos, 1)
    assert short.meta["truncated_rationale"] == (1 if pos >= max(pos, 1) else 0)
    assert data.truncate(ex, 50) is ex


def test_synthetic_trigger_decides_the_label():
    for ex in data.make_synthetic(20, seed=5):
        trigger = ex.flat_words()[ex.meta["trigger_position"]]
        assert trigger in data.SYNTHETIC_TRIGGERS[ex.label]
        assert ex.flat_rationale().count(1) == 1


def test_examples_roundtrip_and_bad_record(tmp_path, raw_dir):
    exs = data.load_esnli_highlights("dev", raw_dir=raw_dir)[:5]
    path = data.save_examples(exs, tmp_path / "x.jsonl")
    assert data.load_examples(path) == exs
    path.write_text(path.read_text() + json.dumps({"id": "x"}) + "\n")
    with pytest.raises(RawDataError, match="line 6"):
        data.load_examples(path)


def test_hub_records_convert_to_the_same_schema():
    sst = data.from_hub_record(
        "sst2", {"sentence": "a fine film ", "label": 1, "idx": 0}, "validation", 0
    )
    assert sst.label == "positive" and sst.words == {"text": ["a", "fine", "film"]}
    nli = data.from_hub_record(
        "esnli",
        {
            "premise": "A dog runs .",
            "hypothesis": "An animal moves .",
            "label": 0,
            "explanation_1": "dogs are animals",
            "explanation_2": "",
            "explanation_3": "",
        },
        "test",
        3,
    )
    assert nli.label == "entailment" and nli.explanations == ["dogs are animals"]
    hx = data.from_hub_record(
        "hatexplain",
        {
            "id": "x",
            "annotators": {"label": [0, 0, 1]},
            "rationales": [[1, 0], [1, 1]],
            "post_tokens": ["you", "people"],
        },
        "test",
        0,
    )
    assert hx.label == "hatespeech" and hx.flat_rationale() == [1, 1]
    with pytest.raises(RawDataError, match=r"hub:esnli/test, line 5, field 'label'"):
        data.from_hub_record("esnli", {"premise": "a", "hypothesis": "b", "label": -1}, "test", 5)


def test_rationale_rule_reaches_the_loaders(raw_dir):
    """``RATIONALE_RULE`` is part of the config hash, so it must change the rationales:
    the union of HateXplain's annotator masks covers at least the majority's words, and
    more on some posts; loaders without annotators ignore it."""
    majority = data.build_split("hatexplain", "eval", 40, 0, 64, raw_dir=raw_dir)
    union = data.build_split(
        "hatexplain", "eval", 40, 0, 64, raw_dir=raw_dir, rationale_rule="union"
    )
    assert [ex.id for ex in majority] == [ex.id for ex in union]
    pairs = [(m.flat_rationale(), u.flat_rationale()) for m, u in zip(majority, union, strict=True)]
    assert all(all(b >= a for a, b in zip(m, u, strict=True)) for m, u in pairs)
    assert any(sum(u) > sum(m) for m, u in pairs)
    assert {ex.meta["rationale_rule"] for ex in union} == {"union"}
    sst2 = data.build_split("sst2", "eval", 5, 0, 64, raw_dir=raw_dir, rationale_rule="union")
    assert len(sst2) == 5
