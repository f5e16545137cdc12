"""phpBB 3.3 prosilver markup (abridged): viewforum.php topic rows, viewtopic.php posts."""

from __future__ import annotations

from html import escape

from tests.scrape.forums.content import Post, Quote, Row, Thread

PER_PAGE = 10


def list_path(page: int) -> str:
    return "/viewforum.php?f=2" + (f"&start={25 * (page - 1)}" if page > 1 else "")


def thread_path(thread: Thread, page: int) -> str:
    return f"/viewtopic.php?t={thread.id}" + (f"&start={PER_PAGE * (page - 1)}" if page > 1 else "")


def human(moment) -> str:  # type: ignore[no-untyped-def]
    return moment.strftime("%a %b %d, %Y %I:%M %p")


def page(title: str, body: str, next_path: str | None, charset: str = "UTF-8") -> str:
    nav = (
        (
            f'<li class="arrow next"><a class="button button-icon-only" href="{escape(next_path)}" rel="next" '
            f'role="button"><span>Next</span></a></li>'
        )
        if next_path
        else ""
    )
    return f"""<!DOCTYPE html>
<html dir="ltr" lang="en-gb">
<head><meta http-equiv="content-type" content="text/html; charset={charset}" />
<title>{escape(title)} - Ski Talk</title></head>
<body id="phpbb" class="nojs notouch section-viewtopic ltr">
<div id="wrap" class="wrap"><div id="page-body" class="page-body" role="main">
<div class="action-bar bar-top"><div class="pagination">3 posts <ul>{nav}</ul></div></div>
{body}
</div></div></body></html>"""


def render_list(rows: list[Row], next_path: str | None, number: int) -> str:
    items = "\n".join(
        f"""<li class="row bg{1 + i % 2}">
  <dl class="row-item topic_read"><dt title="No unread posts"><div class="list-inner">
    <a href="{escape(row.url)}" class="topictitle">{escape(row.title)}</a>
    <div class="topic-poster responsive-hide left-box">by <a href="/memberlist.php?mode=viewprofile&amp;u=5"
      class="username">{row.starter}</a></div></div></dt>
  <dd class="posts">{row.replies} <dfn>Replies</dfn></dd><dd class="views">121 <dfn>Views</dfn></dd>
  <dd class="lastpost"><span><dfn>Last post </dfn>by <a class="username">someone</a>
    <time datetime="{row.last_post_at.isoformat()}">{human(row.last_post_at)}</time></span></dd>
  </dl></li>"""
        for i, row in enumerate(rows)
    )
    body = f"""<h2 class="forum-title"><a href="/viewforum.php?f=2">Skiing</a></h2>
<div class="forumbg"><div class="inner">
<ul class="topiclist"><li class="header"><dl class="row-item"><dt>Topics</dt></dl></li></ul>
<ul class="topiclist topics">
{items}
</ul></div></div>"""
    return page("Skiing", body, next_path)


def render_quote(quote: Quote) -> str:
    inner = render_quote(quote.inner) if quote.inner else ""
    return (
        f'<blockquote cite="/viewtopic.php?p=1#p1"><div><cite><a href="/memberlist.php?mode=viewprofile&amp;u=2">'
        f'{quote.author}</a> wrote: <span class="responsive-hide">Mon Jan 07, 2019</span></cite>'
        f"{inner}{escape(quote.words)}</div></blockquote>"
    )


def render_post(thread: Thread, post: Post) -> str:
    if post.deleted:
        return f"""<div id="p{post.id}" class="post has-profile bg1 deleted"><div class="inner">
  <div class="postbody"><div class="content">This post was deleted by a moderator.</div></div></div></div>"""
    body = (render_quote(post.quote) if post.quote else "") + escape(post.words)
    if post.link:
        body += f' <a href="{post.link[0]}" class="postlink">{post.link[1]}</a>.'
    notice = (
        (
            f'<div id="post_notice{post.id}" class="notice"><span>Last edited by {post.author} on '
            f"{human(post.at)}, edited 1 time in total.</span></div>"
        )
        if post.edited
        else ""
    )
    signature = (
        f'<div id="sig{post.id}" class="signature">{escape(post.signature)}</div>' if post.signature else ""
    )
    return f"""<div id="p{post.id}" class="post has-profile bg2"><div class="inner">
  <dl class="postprofile" id="profile{post.id}"><dt class="has-profile-rank no-avatar">
    <a href="/memberlist.php?mode=viewprofile&amp;u=3" class="username">{post.author}</a></dt>
    <dd class="profile-rank">Member</dd></dl>
  <div class="postbody"><div id="post_content{post.id}">
    <h3><a href="#p{post.id}">Re: {escape(thread.title)}</a></h3>
    <p class="author"><a class="unread" href="#p{post.id}" title="Post"></a><span class="responsive-hide">by
      <strong><a href="/memberlist.php?mode=viewprofile&amp;u=3" class="username">{post.author}</a></strong> » </span>
      <time datetime="{post.at.isoformat()}">{human(post.at)}</time></p>
    <div class="content">{body}</div>
    {notice}
    {signature}
  </div></div></div></div>
<hr class="divider" />"""


def render_thread(thread: Thread, number: int, posts: list[Post], next_path: str | None) -> str:
    body = f'<h2 class="topic-title"><a href="{thread_path(thread, 1)}">{escape(thread.title)}</a></h2>\n'
    body += "\n".join(render_post(thread, post) for post in posts)
    return page(thread.title, body, next_path, "windows-1252" if thread.encoding == "cp1252" else "UTF-8")
