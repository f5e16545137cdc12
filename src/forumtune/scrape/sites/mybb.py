"""MyBB 1.8 (default theme): `tr.inline_row` thread rows, `div.post` posts with `div.post_body`,
quotes as `blockquote.mycode_quote` whose <cite> ("alice Wrote:") is dropped, `div.signature`."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="tr.inline_row",
    thread_link="span[id^=tid_] a",
    thread_last_post="span.lastpost",
    thread_replies="a[href*=whoposted]",
    next_page="a.pagination_next, link[rel=next]",
    thread_title="div.navigation span.active, td.thead div:not(.float_right) > strong",
    post="div.post[id^=post_]",
    post_author="div.author_information span.largetext a, div.author_information strong",
    post_date="span.post_date",  # "Today, 10:15 AM" or "03-02-2020, 10:15 AM"; an edit note nested inside
    post_body="div.post_body",
    quote="blockquote.mycode_quote",
    signature="div.signature",
    remove=["blockquote.mycode_quote > cite", "span.post_edit"],
    deleted=".deleted_post_collapsed, .deleted_post_hidden",
)
PROFILE = MarkupProfile("mybb", SELECTORS)
