"""vBulletin 4 markup (abridged): forumdisplay.php thread bits, showthread.php post containers."""

from __future__ import annotations

from html import escape

from tests.scrape.forums.content import Post, Quote, Row, Thread


def list_path(page: int) -> str:
    return "/forumdisplay.php?f=2" + (f"&page={page}" if page > 1 else "")


def thread_path(thread: Thread, page: int) -> str:
    return f"/showthread.php?t={thread.id}" + (f"&page={page}" if page > 1 else "")


def vb_date(moment) -> str:  # type: ignore[no-untyped-def]
    return f'{moment:%m-%d-%Y}, <span class="time">{moment:%I:%M %p}</span>'


def page(title: str, body: str, next_path: str | None, charset: str = "ISO-8859-1") -> str:
    nav = (
        (
            f'<span class="prev_next"><a rel="next" href="{escape(next_path)}" title="Next Page">'
            f'<img src="images/pagination/next-right.png" alt="Next" /></a></span>'
        )
        if next_path
        else ""
    )
    return f"""<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" dir="ltr" lang="en" id="vbulletin_html">
<head><meta http-equiv="Content-Type" content="text/html; charset={charset}" />
<title>{escape(title)}</title></head>
<body><div class="above_body"><div id="header" class="floatcontainer doc_header">Ski Board</div></div>
<div class="body_wrapper">
<div id="pagination_top" class="pagination_top"><form class="pagination popupmenu nohovermenu">{nav}</form></div>
{body}
</div></body></html>"""


def render_list(rows: list[Row], next_path: str | None, number: int) -> str:
    items = "\n".join(
        f"""<li class="threadbit " id="thread_{i}"><div class="rating0 nonsticky">
  <div class="threadinfo" title=""><div class="inner"><h3 class="threadtitle">
    <a class="title" href="{escape(row.url)}" id="thread_title_{i}">{escape(row.title)}</a></h3>
    <div class="threadmeta"><div class="author"><span class="label">Started by
      <a href="member.php?u=9" class="username understate">{row.starter}</a></span></div></div></div></div>
  <ul class="threadstats td alt" title=""><li>Replies: <a href="misc.php?do=whoposted&amp;t=1">{row.replies}</a></li>
    <li>Views: 1,204</li></ul>
  <dl class="threadlastpost td"><dt class="lastpostby hidden">Last Post By:</dt>
    <dd><div class="popupmenu memberaction"><a class="username offline popupctrl"><strong>someone</strong></a></div></dd>
    <dd>{vb_date(row.last_post_at)}</dd></dl>
</div></li>"""
        for i, row in enumerate(rows)
    )
    return page(
        "Skiing",
        f'<div id="threadlist" class="threadlist"><ol id="threads" class="threads">{items}</ol></div>',
        next_path,
    )


def render_quote(quote: Quote) -> str:
    inner = render_quote(quote.inner) if quote.inner else ""
    return f"""<div class="bbcode_container"><div class="bbcode_quote"><div class="quote_container">
  <div class="bbcode_quote_container"></div>
  <div class="bbcode_postedby"><img src="images/misc/quote_icon.png" alt="Quote" /> Originally Posted by
    <strong>{quote.author}</strong> <a href="showthread.php?p=1#post1" rel="nofollow">View Post</a></div>
  <div class="message">{inner}{escape(quote.words)}</div></div></div></div>"""


def render_post(thread: Thread, number: int, post: Post) -> str:
    head = f"""<div class="posthead"><span class="postdate old"><span class="date">{vb_date(post.at)}</span></span>
    <span class="nodecontrols"><a name="post{post.id}" class="postcounter">#{number}</a></span></div>"""
    if post.deleted:
        return f"""<li class="postbitdeleted postbitim postcontainer" id="post_{post.id}">{head}
  <div class="postbody"><div class="content"><blockquote class="postcontent">Deleted by a moderator: spam.
  </blockquote></div></div></li>"""
    body = (render_quote(post.quote) if post.quote else "") + escape(post.words)
    if post.link:
        body += f' <a href="{post.link[0]}" target="_blank">{post.link[1]}</a>.'
    edited = (
        (
            f'<blockquote class="postcontent lastedited">Last edited by {post.author}; {vb_date(post.at)}.'
            f"</blockquote>"
        )
        if post.edited
        else ""
    )
    signature = (
        (
            f'<blockquote class="signature restore"><div class="signaturecontainer">{escape(post.signature)}'
            f"</div></blockquote>"
        )
        if post.signature
        else ""
    )
    return f"""<li class="postbitlegacy postbitim postcontainer old" id="post_{post.id}">
  {head}
  <div class="postdetails"><div class="userinfo"><div class="username_container">
    <div class="popupmenu memberaction"><a class="username offline popupctrl" href="member.php?u=2"
      title="{post.author} is offline"><strong>{post.author}</strong></a></div></div></div>
  <div class="postbody"><div class="postrow"><h2 class="title icon">Re: {escape(thread.title)}</h2>
    <div class="content"><div id="post_message_{post.id}"><blockquote class="postcontent restore ">{body}
    </blockquote></div></div></div>
    <div class="after_content">{edited}{signature}</div></div></div></li>{thanks_box(post)}"""


def thanks_box(post: Post) -> str:
    """The post thanks plugin's box, a list item of its own right after the post."""
    if not post.likes:
        return ""
    users = "Users Say" if post.likes > 1 else "User Says"
    count = f"{post.likes} " if post.likes > 1 else ""
    names = ", ".join(f'<a href="member.php?u={9 + n}" rel="nofollow">fan{n}</a>' for n in range(post.likes))
    return f"""
<li class="postbitlegacy" id="post_thanks_box_{post.id}"><div class="tbox"><div class="trow">
  <div class="tcell alt2"><strong>The Following {count}{users} Thank You to
    <a href="member.php?u=3" rel="nofollow">{post.author}</a> For This Useful Post:</strong></div>
  <div class="tcell alt1"><div>{names}</div></div></div></div></li>"""


def render_thread(thread: Thread, number: int, posts: list[Post], next_path: str | None) -> str:
    title = (
        f'<div id="pagetitle" class="pagetitle"><h1>Thread: <span class="threadtitle">'
        f'<a href="{thread_path(thread, 1)}">{escape(thread.title)}</a></span></h1></div>'
    )
    items = "\n".join(render_post(thread, i + 1, post) for i, post in enumerate(posts))
    body = f'{title}<div id="postlist" class="postlist restrain"><ol id="posts" class="posts" start="1">{items}</ol></div>'
    return page(thread.title, body, next_path)
