from rich.console import Console

from forumtune.data.inspect import MASKED_STYLE, TRAINED_STYLE, show_examples
from tests.data.test_build import build


def test_inspect_colours_tokens_and_writes_stats_and_histogram(tmp_path, forum_store, tiny_tokenizer):
    build(tmp_path, forum_store, packing=True, max_seq_len=256)
    console = Console(record=True, width=120, force_terminal=True, color_system="truecolor")
    histogram = show_examples(tiny_tokenizer, tmp_path / "dataset", console, count=1, max_seq_len=256)
    html = console.export_html(inline_styles=True, clear=False)
    assert "#008000" in html and "#808080" in html  # green trained tokens, grey masked ones
    text = console.export_text()
    assert "packed examples" in text and "║" in text
    for line in ("train_examples", "train_tokens", "cleaned", "filtered", "near_duplicate", "low_content"):
        assert line in text
    assert histogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (MASKED_STYLE, TRAINED_STYLE) == ("grey50", "bold green")
