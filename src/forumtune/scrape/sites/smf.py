"""Simple Machines Forum 2.0 (Curve): message-index table rows, `div.post_wrapper` posts, quotes as
`blockquote.bbc_standard_quote` after a `div.quoteheader` ("Quote from: ..."), which is dropped.

The next page is the page link right after the current page's number ("Pages: [<strong>1</strong>] 2 3"
in 2.0, `span.current_page` in 2.1): SMF 2.0's <link rel="next"> leads to the next *topic*."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="#messageindex table tbody tr",
    thread_link="td.subject span a",
    thread_last_post="td.lastpost",
    thread_replies="td.stats",
    next_page="div.pagelinks strong + a.navPages, div.pagelinks span.current_page + a.nav_page",
    thread_title="#top_subject, div.navigate_section li.last a span",  # 2.1; 2.0's link tree ends with it
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
