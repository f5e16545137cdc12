"""vBulletin 4: `li.threadbit` rows, `li.postcontainer` posts, quotes in `div.bbcode_container`."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

SELECTORS = SiteSelectors(
    thread_row="li.threadbit",
    thread_link="a.title",
    thread_last_post="dl.threadlastpost dd:last-child",
    thread_replies="ul.threadstats li:first-child",
    next_page="a[rel=next], link[rel=next]",
    thread_title="span.threadtitle, h1 span.threadtitle a",
    post="li.postcontainer",
    post_author=".username_container .username",
    post_date="span.date",
    post_body="div.content blockquote.postcontent",
    quote="div.bbcode_container",
    signature="blockquote.signature",
    remove=["blockquote.lastedited", "div.bbcode_postedby"],
    deleted=".postbitdeleted",
    post_likes="+ [id^=post_thanks_box] strong",  # the thanks plugin's box follows its post
)
PROFILE = MarkupProfile("vbulletin", SELECTORS)
