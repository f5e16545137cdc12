"""Simple Machines Forum 2.0 (Curve): message-index table rows, `div.post_wrapper` posts, quotes as
`blockquote.bbc_standard_quote` after a `div.quoteheader` ("Quote from: ..."), which is dropped."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="#messageindex table tbody tr",
    thread_link="td.subject span a",
    thread_last_post="td.lastpost",
    thread_replies="td.stats",
    next_page="link[rel=next], a.nav_page.next",
    thread_title="#top_subject",  # 2.1; 2.0 has no clean title on the page, the list's is kept
    post="div.post_wrapper",
    post_author="div.poster h4 a, div.poster h4",
    post_date="div.keyinfo div.smalltext",
    post_body="div.post div.inner",
    quote="blockquote.bbc_standard_quote, blockquote.bbc_alternate_quote",
    signature="div.signature",
    remove=["div.quoteheader", "div.quotefooter", "div.modified"],
    deleted=".post-deleted",
)
PROFILE = MarkupProfile("smf", SELECTORS)
