"""The build stage on a real SQLite store of fixture threads: no artifact survives, stats count every removal."""

import json

import pytest
from rich.console import Console

from forumtune.config import Config
from forumtune.data.build import run_build
from forumtune.data.formats import read_conversations
from forumtune.data.pairing import split_threads
from forumtune.errors import BuildError
from forumtune.records import read_jsonl
from tests.data.conftest import ARTIFACTS, WAX_ANSWER, write_store

QUIET = Console(quiet=True)


def build(tmp_path, store, **build_settings):
    settings = {"min_answer_chars": 30, "eval_fraction": 0.0, "answers_per_question": 5, **build_settings}
    config = Config.model_validate({"name": "t", "scrape": {"url": "/"}, "build": settings})
    stats = run_build(config, store, tmp_path / "dataset", QUIET)
    return stats, read_jsonl(tmp_path / "dataset" / "train.jsonl")


def built_text(records) -> str:
    return json.dumps([r["messages"] for r in records], ensure_ascii=False)


@pytest.mark.parametrize("pairing", ["qa", "qa_context", "multi_turn"])
def test_no_artifact_survives_any_pairing(tmp_path, forum_store, tiny_tokenizer, pairing):
    _, records = build(tmp_path, forum_store, pairing=pairing)
    text = built_text(records)
    assert [artifact for artifact in ARTIFACTS if artifact in text] == []
    assert WAX_ANSWER in text or pairing == "multi_turn"
    for record in records:  # the only [/INST] in the tokens are the template's own, one per question
        user_turns = sum(m["role"] == "user" for m in record["messages"])
        assert tiny_tokenizer.decode(record["input_ids"]).count("[/INST]") == user_turns


def test_stats_count_each_cleaning_step_and_filter(tmp_path, forum_store):
    stats, records = build(tmp_path, forum_store)
    assert stats["cleaned"] == {
        "bbcode_tags": 3,
        "edit_notices": 1,
        "emails": 1,
        "emoji_shortcodes": 2,
        "html_tags": 2,
        "mod_notes": 2,
        "phones": 1,
        "quotes": 3,
        "signatures": 2,
        "speaker_tags": 1,
        "template_tokens": 3,
        "urls": 2,
    }
    assert stats["filtered"] == {
        "exact_duplicate": 1,
        "low_content": 2,
        "near_duplicate": 1,
        "reply_by_asker": 1,
    }
    assert (stats["threads"], stats["posts"], stats["train_examples"]) == (3, 14, 6)
    assert stats["train_tokens"] == sum(len(r["input_ids"]) for r in records)
    answers = [r["messages"][-1]["content"] for r in records]
    assert answers.count(WAX_ANSWER) == 1


def test_language_and_length_filters(tmp_path, forum_store):
    _, everything = build(tmp_path / "all", forum_store)
    lengths = sorted(len(r["input_ids"]) for r in everything)
    stats, records = build(tmp_path, forum_store, languages=["en"], max_seq_len=lengths[2])
    assert stats["filtered"]["other_language"] == 1  # the German question (its thread goes with it)
    assert stats["filtered"]["too_long"] >= 1
    assert all(len(r["input_ids"]) <= lengths[2] for r in records)
    assert "Frühjahr" not in built_text(records)


def test_multi_turn_follows_quotes_to_find_who_answers_whom(tmp_path, forum_store):
    stats, records = build(tmp_path, forum_store, pairing="multi_turn")
    layering = next(r for r in records if r["title"].startswith("Layering"))
    roles = [m["role"] for m in layering["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert layering["messages"][3]["content"].startswith("Synthetic is totally fine")  # quoted the follow-up
    waxing = next(r for r in records if r["title"].startswith("How often"))
    assert waxing["messages"][1]["content"].startswith("A rub-on paste wax")  # quoted the question
    assert stats["filtered"]["side_talk"] == 1  # bella answered felix, not the asker


def test_qa_context_puts_earlier_replies_in_the_prompt(tmp_path, forum_store):
    _, records = build(
        tmp_path, forum_store, pairing="qa_context", dedup=False, near_duplicate_threshold=None
    )
    second = [r for r in records if r["title"].startswith("How often")][1]
    assert "Earlier replies in this thread:\n\n[1] " + WAX_ANSWER in second["messages"][0]["content"]


def test_split_is_by_thread_and_reproducible(tmp_path):
    threads = [
        (
            f"Question number {n} about skis?",
            [
                ("asker", f"What about ski model {n}, is it good?", [], None),
                ("expert", f"Model {n} is a fine ski for most people. " * 2, [], None),
            ],
        )
        for n in range(40)
    ]
    store = write_store(tmp_path / "many.sqlite", threads)
    first = build(tmp_path / "a", store, eval_fraction=0.25, near_duplicate_threshold=None)[0]
    eval_threads = {r["thread_id"] for r in read_jsonl(tmp_path / "a" / "dataset" / "eval.jsonl")}
    train_threads = {r["thread_id"] for r in read_jsonl(tmp_path / "a" / "dataset" / "train.jsonl")}
    assert len(eval_threads) == 10 and not eval_threads & train_threads
    assert split_threads(list(range(1, 41)), 0.25, 42)[1] == eval_threads
    assert split_threads(list(range(1, 41)), 0.25, 7)[1] != eval_threads
    assert first["eval_examples"] == 10


def test_export_and_import_round_trip(tmp_path, forum_store):
    build(tmp_path, forum_store, export_formats=["messages", "sharegpt", "alpaca"])
    dataset = tmp_path / "dataset"
    originals = [r["messages"] for r in read_jsonl(dataset / "train.jsonl")]
    for shape in ("messages", "sharegpt", "alpaca"):
        imported = read_conversations(dataset / f"train.{shape}.jsonl")
        assert [c.messages for c in imported] == originals
    sharegpt_row = read_jsonl(dataset / "train.sharegpt.jsonl")[0]
    assert [turn["from"] for turn in sharegpt_row["conversations"]] == ["human", "gpt"]
    stats, records = build(
        tmp_path / "again",
        None,
        input_file=dataset / "train.alpaca.jsonl",
        system_prompt="You answer ski questions.",
    )
    assert stats["rows"] == len(originals) and len(records) == len(originals)
    assert records[0]["messages"][0] == {"role": "system", "content": "You answer ski questions."}


def test_bad_input_file_names_the_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"prompt": "no shape"}\n')
    config = Config.model_validate({"name": "t", "scrape": {"url": "/"}, "build": {"input_file": str(path)}})
    with pytest.raises(BuildError, match=r"mine.jsonl, line 2: expected a `messages` list"):
        run_build(config, tmp_path / "none.sqlite", tmp_path / "dataset", QUIET)


def test_packing_writes_rows_with_restarting_positions(tmp_path, forum_store):
    stats, rows = build(tmp_path, forum_store, packing=True, max_seq_len=256)
    assert stats["train_packed_rows"] == len(rows) < stats["train_examples"]
    assert sum(len(row["thread_ids"]) for row in rows) == stats["train_examples"]
    for row in rows:
        assert len(row["input_ids"]) <= 256
        starts = [i for i, position in enumerate(row["position_ids"]) if position == 0]
        assert len(starts) == len(row["thread_ids"])
        assert all(row["labels"][start] == -100 for start in starts)
