"""build.preferences: pairs of replies ranked by votes (real SQLite store) and imported preference JSONL."""

from __future__ import annotations

import json
from collections import Counter

from forumtune.data.preferences import ScoredReply, pair_replies
from forumtune.records import IGNORE_INDEX, read_jsonl
from tests.data.test_build import build
from tests.data.test_votes import post, voted_store

QUESTION = "Which wax should I use for spring slush on my old skis, and how often?"
GOOD = "A soft warm-temperature wax, and structure the base so the slush does not suck you to a stop."
OK = "Any universal wax is fine in spring, just put plenty of it on the base every couple of days."
BAD = "Wax is a scam invented by ski shops, you never need it at all, save your money for beer."
ALSO_BAD = "I never wax, my skis are fine, though they are a bit slow on the flats in spring I guess."


def reply(text: str, score: float, author: str | None = None, accepted: bool = False, position: int = 0):
    return ScoredReply(text, score, author, accepted, position)


def test_pairing_rules_margin_author_cap_and_accepted():
    dropped: Counter[str] = Counter()
    replies = [
        reply(GOOD, 9, "ann", position=1),
        reply(OK, 5, "ben", position=2),
        reply(BAD, 0, "ann", position=3),
        reply(ALSO_BAD, 4, "cat", position=4),
    ]
    pairs = pair_replies(7, [], replies, min_margin=2, max_pairs=2, dropped=dropped)
    # candidates: GOOD>OK (4), GOOD>ALSO_BAD (5), OK>BAD (5), ALSO_BAD>BAD (4); GOOD>BAD same author, OK~ALSO_BAD tie
    assert [(p.chosen.text, p.rejected.text) for p in pairs] == [(GOOD, ALSO_BAD), (OK, BAD)]
    assert dropped == {"same_author": 1, "margin_below_minimum": 1, "over_pairs_per_question": 2}
    accepted = pair_replies(
        8,
        [],
        [reply(OK, 1, "ben", accepted=True), reply(GOOD, 30, "ann")],
        min_margin=2,
        max_pairs=3,
        dropped=dropped,
    )
    assert [(p.chosen.text, p.rejected.text) for p in accepted] == [
        (OK, GOOD)
    ]  # accepted wins whatever the likes
    assert pair_replies(9, [], [reply(GOOD, 3)], min_margin=0, max_pairs=3, dropped=dropped) == []
    assert dropped["questions_with_fewer_than_2_voted_replies"] == 1


VOTED_THREADS = [
    (
        "Spring wax",
        [
            post("asker", QUESTION, likes=2),
            post("ann", "User 2: " + GOOD + " :D", likes=9),
            post("ben", BAD, likes=1),
            post("cat", OK, likes=8),
            post("asker", "Thanks all, very helpful " * 3, likes=20),
            post("dan", "+1", likes=30),
            post("eve", ALSO_BAD),
        ],
    ),
    (
        "Slush wax again",
        [
            post("asker2", QUESTION + " Again.", likes=0),
            post("cat", GOOD + " Really.", likes=12),
            post("dan", OK + " Works.", likes=3, accepted=True),
            post("fay", BAD + " Honest.", likes=11),
        ],
    ),
]


def test_store_votes_become_masked_pairs_with_drop_stats(tmp_path, tiny_tokenizer):
    store = voted_store(tmp_path / "voted.sqlite", VOTED_THREADS)
    stats, _ = build(
        tmp_path,
        store,
        preferences=True,
        preference_min_margin=2,
        preference_pairs_per_question=3,
        min_answer_chars=20,
    )
    rows = read_jsonl(tmp_path / "dataset" / "preferences_train.jsonl")
    pairs = {(row["prompt"][-1]["content"].splitlines()[0], row["chosen"], row["rejected"]) for row in rows}
    assert pairs == {
        ("Spring wax", GOOD, BAD),
        ("Spring wax", OK, BAD),  # cleaned as SFT answers ("User 2:", ":D")
        ("Slush wax again", OK + " Works.", GOOD + " Really."),  # accepted first
        ("Slush wax again", OK + " Works.", BAD + " Honest."),
    }
    preference = stats["preferences"]
    assert preference["dropped"]["replies_without_votes"] == 1  # eve shows no likes
    assert preference["dropped"]["margin_below_minimum"] == 2  # GOOD 9 vs OK 8; GOOD 12 vs BAD 11
    assert preference["train_rows"] == 4 and preference["eval_rows"] == 0
    for row in rows:  # the prompt is masked, each answer trains, and both share the prompt's tokens
        for side in ("chosen", "rejected"):
            ids, labels = row[f"{side}_input_ids"], row[f"{side}_labels"]
            start = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
            assert all(label == IGNORE_INDEX for label in labels[:start]) and labels[start:] == ids[start:]
            assert tiny_tokenizer.decode(ids[start:], skip_special_tokens=True).strip() == row[side]
        assert row["chosen_input_ids"][:start] == row["rejected_input_ids"][:start]
    dataset = json.loads((tmp_path / "dataset" / "stats.json").read_text())
    assert dataset["preferences"] == preference


def write_lines(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_imported_preference_shapes(tmp_path):
    rows = [
        {"prompt": "How do I wax?", "chosen": GOOD, "rejected": BAD},
        {
            "prompt": [{"role": "user", "content": "Spring wax?"}],
            "chosen": [{"role": "assistant", "content": OK}],
            "rejected": [{"role": "assistant", "content": ALSO_BAD}],
        },
        {
            "chosen": [{"role": "user", "content": "Slush?"}, {"role": "assistant", "content": GOOD}],
            "rejected": [
                {"role": "user", "content": "Slush?"},
                {"role": "assistant", "content": "[INST]" + BAD},
            ],
        },
        {"prompt": "Kto?", "completion": GOOD, "label": True},
        {"prompt": "Kto?", "completion": BAD, "label": False},
        {
            "messages": [{"role": "user", "content": "Scored?"}, {"role": "assistant", "content": GOOD}],
            "score": 10,
            "author": "ann",
        },
        {
            "messages": [{"role": "user", "content": "Scored?"}, {"role": "assistant", "content": BAD}],
            "score": 1,
            "author": "ben",
        },
        {
            "messages": [{"role": "user", "content": "Scored?"}, {"role": "assistant", "content": OK}],
            "score": 2,
            "author": "ann",
        },
    ]
    source = write_lines(tmp_path / "prefs.jsonl", rows)
    stats, sft = build(
        tmp_path,
        None,
        input_file=source,
        preferences=True,
        preference_min_margin=2,
        min_answer_chars=0,
        dedup=False,
        near_duplicate_threshold=None,
    )
    written = read_jsonl(tmp_path / "dataset" / "preferences_train.jsonl")
    got = {
        (r["prompt"][-1]["content"], r.get("chosen", r.get("completion")), r.get("rejected", r.get("label")))
        for r in written
    }
    assert got == {
        ("How do I wax?", GOOD, BAD),
        ("Spring wax?", OK, ALSO_BAD),
        ("Slush?", GOOD, " " + BAD),  # template markup removed as from an SFT row
        ("Kto?", GOOD, True),
        ("Kto?", BAD, False),
        ("Scored?", GOOD, BAD),
    }
    assert stats["preferences"]["dropped"] == {"margin_below_minimum": 1, "same_author": 1}
    # SFT learns each preferred answer (and every scored reply, as plain messages rows)
    assert sorted(r["messages"][-1]["content"] for r in sft) == sorted([GOOD, OK, GOOD, GOOD, GOOD, BAD, OK])
    assert len(sft) == 7  # 3 pairs, 1 good label, 3 scored replies


def test_inspect_shows_a_pair_with_its_masks(tmp_path, tiny_tokenizer):
    from rich.console import Console

    from forumtune.data.inspect import show_examples

    store = voted_store(tmp_path / "voted.sqlite", VOTED_THREADS)
    build(tmp_path, store, preferences=True, min_answer_chars=20)
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    show_examples(tiny_tokenizer, tmp_path / "dataset", console, count=1)
    text = console.export_text(clear=False)
    assert "preference 1" in text and "chosen (" in text and "rejected (" in text and "score 9" in text
    html = console.export_html(inline_styles=True)
    pair_part = html[html.index("preference ") : html.index("dataset stats")]
    assert "#808080" in pair_part and "#008000" in pair_part  # the prompt grey (masked), the answers green
