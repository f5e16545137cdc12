"""XenForo 2 (`article.message--post`, bbCodeBlock--quote quotes, reactions bar) and XenForo 1.x
(`li.message` in `ol.messageList`, `div.bbCodeQuote` quotes, "alice, bob and 3 others like this")."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

XENFORO_2 = SiteSelectors(
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
    remove=[
        "div.message-lastEdit",
        "div.js-selectToQuoteEnd",
        "div.bbCodeBlock-title",
        "div.bbCodeBlock-expandLink",
    ],
    deleted=".message--deleted",
    post_likes=".reactionsBar-link",  # "alice, bob and 3 others"; absent when nobody reacted
)
XENFORO_1 = SiteSelectors(
    thread_row="li.discussionListItem",
    thread_link="h3.title a.PreviewTooltip, h3.title a[href*='threads/']",
    thread_last_post="dl.lastPostInfo .DateTime",
    thread_replies="dl.major dd",
    next_page="link[rel=next], div.PageNav nav a.text:last-child",
    thread_title="div.titleBar h1",
    post="li.message[id^=post-]",
    post_author="div.messageUserInfo a.username, .messageMeta a.username.author",
    post_date=".messageMeta .DateTime",  # <abbr data-time=...> when recent, <span title="date"> when older
    post_body="div.messageContent blockquote.messageText",
    quote="div.bbCodeQuote",
    signature="div.signature",
    remove=["div.attribution", "div.quoteExpand", "div.messageTextEndMarker", "div.editDate"],
    deleted=".messageNotice--deleted, li.message.deleted",
    post_likes=".likesSummary .LikeText",
)
PROFILE = MarkupProfile("xenforo", XENFORO_2, XENFORO_1)
