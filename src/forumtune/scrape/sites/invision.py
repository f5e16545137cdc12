"""Invision Community 4 (IPS 4): `li.ipsDataItem` topic rows, `article[id^=elComment_]` posts with the
words in `[data-role=commentContent]`, quotes as `blockquote.ipsQuote`, reactions counted per kind."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="li.ipsDataItem[data-rowid]",
    thread_link="h4.ipsDataItem_title span.ipsType_break a, h4.ipsDataItem_title a",
    thread_last_post="ul.ipsDataItem_lastPoster time",
    thread_replies="ul.ipsDataItem_stats li:first-child span.ipsDataItem_stats_number",
    next_page="li.ipsPagination_next:not(.ipsPagination_inactive) a, link[rel=next]",
    thread_title="h1.ipsType_pageTitle span.ipsType_break, h1.ipsType_pageTitle",
    post="article[id^=elComment_]",
    # The name alone: the author pane's heading also holds the reputation badge, and themes put a
    # "Topic Starter" button before the name; a guest sees the name as a <span>, a member as a link.
    post_author=".cAuthorPane_author strong > a, .cAuthorPane_author strong > span, h3.cAuthorPane_author > a",
    post_date="div.ipsComment_meta time",
    post_body="div.cPost_contentWrap [data-role=commentContent], [data-role=commentContent]",
    quote="blockquote.ipsQuote",
    signature="div[data-role=memberSignature]",
    remove=["div.ipsQuote_citation", "[data-excludequote]"],  # the citation line; "Edited ... by ..."
    deleted=".ipsComment_deleted, .ipsModerated",
    post_likes="ul.ipsReact_reactions li.ipsReact_reactCount",  # one item per kind of reaction: summed
)
PROFILE = MarkupProfile("invision", SELECTORS)
