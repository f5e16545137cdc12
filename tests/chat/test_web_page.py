"""The web chat page in headless Chromium: a question typed in, the answer streamed in, base vs fine-tuned."""

from __future__ import annotations

from tests.chat.browser import chromium_page, save_screenshot
from tests.chat.conftest import live_server

from forumtune.chat.engine import SamplingSettings
from forumtune.chat.server import create_app

REPLY_TOKENS = 160
QUESTION = "which skis for deep powder?"
FOLLOW_UP = "and for icy mornings?"

# Records every text the newest reply shows while it streams in, so the test can tell it arrived in pieces.
WATCH_REPLIES = """() => {
  window.replyTexts = [];
  new MutationObserver(() => {
    const replies = document.querySelectorAll('.message.assistant .text');
    if (replies.length) window.replyTexts.push(replies[replies.length - 1].textContent);
  }).observe(document.getElementById('log'), {childList: true, subtree: true, characterData: true});
}"""


def ask(page, question: str) -> str:
    """Type the question, press Enter, and wait until its answer has finished streaming in."""
    replies = page.locator(".message.assistant")
    answered = replies.count()
    page.fill("#prompt", question)
    page.press("#prompt", "Enter")
    page.wait_for_selector(
        f".message.assistant:nth-child({2 * answered + 2})[data-done='true']", timeout=30_000
    )
    return replies.last.locator(".text").text_content()


def test_a_typed_question_gets_a_streamed_answer_from_either_model(tuned_and_base, model_name):
    tuned, base = tuned_and_base[model_name], tuned_and_base[f"{model_name}-base"]
    settings = SamplingSettings(max_new_tokens=REPLY_TOKENS, temperature=0)
    question = [{"role": "user", "content": QUESTION}]
    app = create_app(tuned_and_base, sampling=settings)

    with live_server(app) as url, chromium_page() as page:
        page.goto(url)
        page.wait_for_selector(f"#models button[data-model='{model_name}'][aria-pressed='true']")
        page.evaluate(WATCH_REPLIES)
        tuned_answer = ask(page, QUESTION)
        shown_while_streaming = set(page.evaluate("window.replyTexts"))

        page.click(f"#models button[data-model='{model_name}-base']")
        base_answer = ask(page, FOLLOW_UP)
        labels = page.locator(".message.assistant .who").all_text_contents()
        screenshot = save_screenshot(page, "chat-web-page.png")
        page.click("#new-chat")
        assert page.locator(".message").count() == 0

    assert tuned_answer == tuned.complete(question, max_new_tokens=REPLY_TOKENS, temperature=0)[0]
    # The base model carries on the same conversation, the fine-tune's answer included.
    conversation = [
        *question,
        {"role": "assistant", "content": tuned_answer},
        {"role": "user", "content": FOLLOW_UP},
    ]
    assert base_answer == base.complete(conversation, max_new_tokens=REPLY_TOKENS, temperature=0)[0]
    assert labels == [model_name, f"{model_name}-base"]
    # Streamed: the reply grew through several partial texts before the whole of it was there.
    partial = {
        text
        for text in shown_while_streaming
        if text and text != tuned_answer and tuned_answer.startswith(text)
    }
    assert len(partial) >= 3
    assert screenshot.stat().st_size > 10_000
