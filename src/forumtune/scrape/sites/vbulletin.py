"""vBulletin 3.8 (posts are tables in `div#editNNN`, inline-styled quotes), 4 (`li.postcontainer`,
`div.bbcode_container` quotes) and 5 (`li.b-post` components); the thanks plugin's count where shown."""

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.markup import MarkupProfile

THANKS = "+ [id^=post_thanks_box] strong"  # the thanks plugin's box follows its post

VBULLETIN_4 = SiteSelectors(
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
    post_likes=THANKS,
)
# vBulletin 3.8's postbit has few classes: a quote is a div styled "margin:20px" holding a "Quote:" label
# and a table whose cell has "Originally Posted by X" and then the quoted words in italics; the
# signature is the div after the message that is neither the edit note nor empty.
QUOTE_3 = 'div[style*="margin:20px"]:has(> table)'  # a [code] block is the same div around a <pre>
VBULLETIN_3 = SiteSelectors(
    thread_row="tbody[id^=threadbits_forum_] > tr",
    thread_link="a[id^=thread_title_]",
    thread_last_post="td[title^=Replies] div.smallfont",
    thread_replies="td[title^=Replies]",  # title="Replies: 5, Views: 120"; the text is the last post
    next_page="a[rel=next], link[rel=next]",
    thread_title="td.navbar strong",
    post="div[id^=edit]:has(> table[id^=post])",
    post_author="a.bigusername",
    post_date="td.thead",
    post_body="div[id^=post_message_]",
    quote=QUOTE_3,
    signature="div[id^=post_message_] ~ div:not(.smallfont):not(:has(div.smallfont))",
    remove=[
        'div[style*="margin:20px"] > div.smallfont',
        'td.alt2 > div:first-child:has(+ div[style*="italic"])',
    ],
    deleted="td.thead img[alt=Deleted]",
    post_likes=THANKS,
)
VBULLETIN_5 = SiteSelectors(
    thread_row="li.topic-item",
    thread_link="a.topic-title",
    thread_last_post="td.cell-lastpost .post-date, .lastpost-date",
    thread_replies="td.cell-count .posts-count, .replies-count",
    next_page="link[rel=next], a.right-arrow[rel=next]",
    thread_title="h1.main-title",
    post="li.b-post",
    post_id_attribute="data-node-id",
    post_author=".b-userinfo__details .author a, .b-userinfo__details .author",
    post_date=".b-post__timestamp time",
    post_body="div.js-post__content-text",
    quote="div.bbcode_container",
    signature="div.post-signature",
    remove=["div.bbcode_postedby"],
    deleted=".b-post--deleted",
)
PROFILE = MarkupProfile("vbulletin", VBULLETIN_4, VBULLETIN_3, VBULLETIN_5)
