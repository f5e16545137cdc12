"""A newschoolers-style layout (thread rows with last-post dates, posts with quotes, signatures and
moderator notes); the bundled demo forum is written in it, so the `demo` profile is this one."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="li.thread-row",
    thread_link="a.thread-link",
    thread_last_post="time.thread-last-date",
    thread_replies=".thread-replies",
    next_page="nav.pagination a.page-next",
    thread_title="h1.thread-title",
    post="div.post",
    post_id_attribute="data-post-id",
    post_author=".post-author",
    post_date="time.post-date",
    post_body=".post-body",
    quote="blockquote.quote",
    signature=".signature",
    remove=["div.mod-note", ".edit-note"],
    deleted=".post-deleted",
    post_likes=".post-meta .post-likes",
    post_accepted=".post-meta .post-accepted",
)
PROFILE = MarkupProfile("newschoolers", SELECTORS)
