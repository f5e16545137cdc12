"""XenForo 2: `div.structItem--thread` rows, `article.message--post` posts, quotes as bbCodeBlock--quote."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="div.structItem--thread",
    thread_link="div.structItem-title a[data-tp-primary], div.structItem-title a:last-child",
    thread_last_post="time.structItem-latestDate",
    thread_replies="dl.pairs--justified dd",
    next_page="a.pageNav-jump--next, link[rel=next]",
    thread_title="h1.p-title-value",
    post="article.message--post",
    post_id_attribute="data-content",
    post_author="h4.message-name .username, .message-name",
    post_date=".message-attribution-main time.u-dt",
    post_body="article.message-body div.bbWrapper, div.bbWrapper",
    quote="blockquote.bbCodeBlock--quote",
    signature="aside.message-signature",
    remove=["div.message-lastEdit", "div.js-selectToQuoteEnd", "div.bbCodeBlock-title", "div.bbCodeBlock-expandLink"],
    deleted=".message--deleted",
    post_likes=".reactionsBar-link",  # "alice, bob and 3 others"; absent when nobody reacted
)
PROFILE = MarkupProfile("xenforo", SELECTORS)
