"""Simple Machines Forum 2.0 (Curve) markup (abridged): the message index table, display.template posts.

SMF 2.0 boards often run in ISO-8859-1; this fixture leaves its pages' charset undeclared, so the
scraper has to notice on its own that the bytes are not UTF-8."""

from __future__ import annotations

from html import escape

from tests.scrape.forums.content import Post, Quote, Row, Thread


def list_path(page: int) -> str:
    return f"/index.php?board=1.{20 * (page - 1)}"


def thread_path(thread: Thread, page: int) -> str:
    return f"/index.php?topic={thread.id}.{15 * (page - 1)}"


def smf_date(moment) -> str:  # type: ignore[no-untyped-def]
    return f"{moment:%B %d, %Y, %I:%M:%S %p}"


def page(title: str, body: str, pagelinks: str = "", topic: int | None = None) -> str:
    # SMF 2.0's head links a topic page to the previous and next *topic*, not to its next page.
    link = f'<link rel="next" href="/index.php?topic={topic}.0;prev_next=next" />' if topic else ""
    return f"""<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head>
<title>{escape(title)}</title>{link}</head>
<body><div id="wrapper"><div id="content_section"><div class="frame"><div id="main_content_section">
<div class="pagesection"><div class="pagelinks floatleft">Pages: [<strong>1</strong>] {pagelinks}</div></div>
{body}
</div></div></div></div></body></html>"""


def render_list(rows: list[Row], next_path: str | None, number: int) -> str:
    items = "\n".join(
        f"""<tr>
  <td class="icon1 windowbg"><img src="xx.gif" alt="" /></td>
  <td class="subject windowbg2"><div><span id="msg_{i}"><a href="{escape(row.url)}">{escape(row.title)}</a></span>
    <p>Started by <a href="/index.php?action=profile;u=9" title="View the profile of {row.starter}">{row.starter}</a></p></div></td>
  <td class="stats windowbg">{row.replies} Replies<br />204 Views</td>
  <td class="lastpost windowbg2"><a href="{escape(row.url)}#new"><img src="last_post.gif" alt="Last post" /></a>
    {smf_date(row.last_post_at)}<br />by <a href="/index.php?action=profile;u=3">someone</a></td>
</tr>"""
        for i, row in enumerate(rows)
    )
    body = f"""<div class="tborder topic_table" id="messageindex"><table class="table_grid" cellspacing="0">
<thead><tr class="catbg"><th scope="col" class="first_th" width="8%" colspan="2">&nbsp;</th><th scope="col">Subject</th></tr></thead>
<tbody>{items}</tbody></table></div>"""
    return page("Skiing", body, next_page_link(next_path))


def next_page_link(next_path: str | None) -> str:
    return f'<a class="navPages" href="{escape(next_path)}">2</a>' if next_path else ""


def render_quote(quote: Quote, depth: int = 0) -> str:
    inner = render_quote(quote.inner, depth + 1) if quote.inner else ""
    style = "bbc_alternate_quote" if depth % 2 else "bbc_standard_quote"
    return (
        f'<div class="quoteheader"><div class="topslice_quote"><a href="/index.php?topic=1.msg1#msg1">Quote from: '
        f'{quote.author} on January 07, 2019, 07:50:00 PM</a></div></div><blockquote class="{style}">{inner}'
        f'{escape(quote.words)}</blockquote><div class="quotefooter"><div class="botslice_quote"></div></div>'
    )


def render_post(thread: Thread, number: int, post: Post) -> str:
    body = (render_quote(post.quote) if post.quote else "") + escape(post.words)
    if post.link:
        body += f' <a href="{post.link[0]}" class="bbc_link" target="_blank">{post.link[1]}</a>.'
    modified = (
        f"&#171; <em>Last Edit: {smf_date(post.at)} by {post.author}</em> &#187;" if post.edited else ""
    )
    signature = (
        f'<div class="signature" id="msg_{post.id}_signature">{escape(post.signature)}</div>'
        if post.signature
        else ""
    )
    return f"""<a id="msg{post.id}"></a>
<div class="windowbg{2 if number % 2 else ""}"><span class="topslice"><span></span></span>
<div class="post_wrapper">
  <div class="poster"><h4><a href="/index.php?action=profile;u=2" title="View the profile of {post.author}">{post.author}</a></h4>
    <ul class="reset smalltext" id="msg_{post.id}_extra_info"><li class="postgroup">Newbie</li></ul></div>
  <div class="postarea"><div class="flow_hidden"><div class="keyinfo">
    <h5 id="subject_{post.id}"><a href="{thread_path(thread, 1)}.msg{post.id}#msg{post.id}">Re: {escape(thread.title)}</a></h5>
    <div class="smalltext">&#171; <strong>{"Reply #" + str(number) + " " if number > 1 else ""}on:</strong> {smf_date(post.at)} &#187;</div>
    <div id="msg_{post.id}_quick_mod"></div></div></div>
    <div class="post"><div class="inner" id="msg_{post.id}">{body}</div></div></div>
  <div class="moderatorbar"><div class="smalltext modified" id="modified_{post.id}">{modified}</div>
    <div class="smalltext reportlinks">Logged</div>{signature}</div>
</div><span class="botslice"><span></span></span></div>
<hr class="post_separator" />"""


def render_thread(thread: Thread, number: int, posts: list[Post], next_path: str | None) -> str:
    visible = [post for post in posts if not post.deleted]  # SMF shows nothing of a post a moderator removed
    items = "\n".join(render_post(thread, i + 1, post) for i, post in enumerate(visible))
    body = f"""<div id="forumposts"><div class="cat_bar"><h3 class="catbg"><span id="author">Author</span>
Topic: {escape(thread.title)} &nbsp;(Read 204 times)</h3></div><form action="#" method="post" id="quickModForm">{items}</form></div>"""
    return page(thread.title, body, next_page_link(next_path), topic=thread.id)
