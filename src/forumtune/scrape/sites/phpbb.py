"""phpBB 3.x (prosilver): topic rows in `ul.topiclist`, posts in `div.post`, quotes as <blockquote>."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="ul.topiclist.topics li.row",
    thread_link="a.topictitle",
    thread_last_post="dd.lastpost time, dd.lastpost span",
    thread_replies="dd.posts",
    next_page="a[rel=next], link[rel=next]",
    thread_title="h2.topic-title",
    post="div.post",
    post_author="p.author .username, p.author a.username-coloured",
    post_date="p.author time, p.author",
    post_body="div.content",
    quote="blockquote",
    signature="div.signature",
    remove=["div.notice", "dl.attachbox", "blockquote cite"],
    deleted=".post-deleted, .deleted",
)
PROFILE = MarkupProfile("phpbb", SELECTORS)
