"""phpBB 3.x (prosilver): topic rows in `ul.topiclist`, posts in `div.post`, quotes as <blockquote>.
phpBB 3.0 writes the author as a bare link in `p.author strong`, the title as `h2 > a` and the next page
as `a.right-box`; 3.1 and later add classes (`.username`, `h2.topic-title`) and a rel=next link."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="ul.topiclist.topics li.row",
    thread_link="a.topictitle",
    thread_last_post="dd.lastpost time, dd.lastpost span",
    thread_replies="dd.posts",
    next_page="a[rel=next], link[rel=next], div.pagination a.right-box, a.right-box",
    thread_title="h2.topic-title, #page-body > h2 > a",
    post="div.post",
    post_author="p.author .username, p.author a.username-coloured, p.author strong a",
    post_date="p.author time, p.author",
    post_body="div.content",
    quote="blockquote",
    signature="div.signature",
    remove=["div.notice", "dl.attachbox", "blockquote cite"],
    deleted=".post-deleted, .deleted",
)
PROFILE = MarkupProfile("phpbb", SELECTORS)
