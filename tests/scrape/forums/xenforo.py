"""XenForo 2 markup (abridged): structItem thread rows, message--post articles, pageNav links."""

from __future__ import annotations

from html import escape

from tests.scrape.forums.content import Post, Quote, Row, Thread


def list_path(page: int) -> str:
    return "/forums/skiing.2/" + (f"page-{page}" if page > 1 else "")


def thread_path(thread: Thread, page: int) -> str:
    return f"/threads/{thread.slug}.{thread.id}/" + (f"page-{page}" if page > 1 else "")


def xf_time(moment, css: str = "u-dt") -> str:  # type: ignore[no-untyped-def]
    return (
        f'<time class="{css}" dir="auto" datetime="{moment:%Y-%m-%dT%H:%M:%S+0000}" '
        f'data-time="{int(moment.timestamp())}" title="{moment:%b %d, %Y at %I:%M %p}">{moment:%b %d, %Y}</time>'
    )


def page(title: str, body: str, next_path: str | None, charset: str = "utf-8") -> str:
    nav = (
        f'<a href="{escape(next_path)}" class="pageNav-jump pageNav-jump--next">Next</a>' if next_path else ""
    )
    return f"""<!DOCTYPE html>
<html id="XF" lang="en-US" dir="LTR" data-app="public" data-template="thread_view" class="has-no-js">
<head><meta charset="{charset}" /><title>{escape(title)} | Ski Club</title></head>
<body data-template="thread_view"><div class="p-pageWrapper" id="top"><div class="p-body"><div class="p-body-inner">
<div class="p-title "><h1 class="p-title-value">{escape(title)}</h1></div>
<div class="block-outer"><div class="pageNavWrapper pageNavWrapper--mixed"><div class="pageNav">
<ul class="pageNav-main"><li class="pageNav-page pageNav-page--current"><a href="#">1</a></li></ul>{nav}</div></div></div>
{body}
</div></div></div></body></html>"""


def render_list(rows: list[Row], next_path: str | None, number: int) -> str:
    items = "\n".join(
        f"""<div class="structItem structItem--thread js-inlineModContainer" data-author="{row.starter}">
  <div class="structItem-cell structItem-cell--main" data-xf-init="touch-proxy"><div class="structItem-title">
    <a href="{escape(row.url)}" class="" data-tp-primary="on" data-xf-init="preview-tooltip">{escape(row.title)}</a></div>
    <div class="structItem-minor"><ul class="structItem-parts"><li><a href="/members/x.9/" class="username">{row.starter}</a></li></ul></div></div>
  <div class="structItem-cell structItem-cell--meta" title="First message reaction score: 0">
    <dl class="pairs pairs--justified"><dt>Replies</dt><dd>{row.replies}</dd></dl>
    <dl class="pairs pairs--justified structItem-minor"><dt>Views</dt><dd>1K</dd></dl></div>
  <div class="structItem-cell structItem-cell--latest"><a href="{escape(row.url)}latest" rel="nofollow">
    {xf_time(row.last_post_at, "structItem-latestDate u-dt")}</a></div>
</div>"""
        for row in rows
    )
    body = f'<div class="structItemContainer"><div class="structItemContainer-group js-threadList">{items}</div></div>'
    return page("Skiing", body, next_path)


def render_quote(quote: Quote) -> str:
    inner = render_quote(quote.inner) if quote.inner else ""
    return f"""<blockquote data-attributes="member: 2" data-quote="{quote.author}" data-source="post: 1"
  class="bbCodeBlock bbCodeBlock--expandable bbCodeBlock--quote js-expandWatch">
  <div class="bbCodeBlock-title"><a href="/goto/post?id=1" class="bbCodeBlock-sourceJump" rel="nofollow">{quote.author} said:</a></div>
  <div class="bbCodeBlock-content"><div class="bbCodeBlock-expandContent js-expandContent ">{inner}{escape(quote.words)}</div>
  <div class="bbCodeBlock-expandLink js-expandLink"><a role="button" tabindex="0">Click to expand...</a></div></div>
</blockquote>"""


def render_post(thread: Thread, post: Post) -> str:
    if post.deleted:
        return f"""<article class="message message--post message--deleted js-post" data-author="{post.author}"
  data-content="post-{post.id}" id="js-post-{post.id}"><div class="messageNotice messageNotice--deleted">
  {post.author}'s post was deleted.</div></article>"""
    body = (render_quote(post.quote) if post.quote else "") + escape(post.words)
    if post.link:
        body += f' <a href="{post.link[0]}" target="_blank" class="link link--external" rel="nofollow ugc noopener">{post.link[1]}</a>.'
    edited = f'<div class="message-lastEdit">Last edited: {xf_time(post.at)}</div>' if post.edited else ""
    reactions = ""
    if post.likes:  # XenForo names the first reactors, then "and N others"
        names = ", ".join(f"<bdi>{name}</bdi>" for name in ["erin", "frank"][: post.likes])
        rest = f" and {post.likes - 2} others" if post.likes > 2 else ""
        reactions = f"""<div class="reactionsBar js-reactionsList is-active"><ul class="reactionSummary">
      <li><span class="reaction reaction--small reaction--1" data-reaction-id="1"><img src="data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7" class="reaction-sprite js-reaction" alt="Like" title="Like" /></span></li></ul>
      <span class="u-srOnly">Reactions:</span><a class="reactionsBar-link" href="/posts/{post.id}/reactions" data-xf-click="overlay" rel="nofollow">{names}{rest}</a></div>"""
    signature = (
        f'<aside class="message-signature"><div class="bbWrapper">{escape(post.signature)}</div></aside>'
        if post.signature
        else ""
    )
    return f"""<article class="message message--post js-post js-inlineModContainer" data-author="{post.author}"
  data-content="post-{post.id}" id="js-post-{post.id}"><span class="u-anchorTarget" id="post-{post.id}"></span>
  <div class="message-inner"><div class="message-cell message-cell--user"><section class="message-user">
    <div class="message-userDetails"><h4 class="message-name"><a href="/members/{post.author}.2/" class="username "
      dir="auto">{post.author}</a></h4><h5 class="userTitle message-userTitle">Member</h5></div></section></div>
  <div class="message-cell message-cell--main"><div class="message-main js-quickEditTarget">
    <header class="message-attribution message-attribution--split"><ul class="message-attribution-main listInline ">
      <li class="u-concealed"><a href="/threads/{thread.slug}.{thread.id}/post-{post.id}" rel="nofollow">{xf_time(post.at)}</a></li>
    </ul></header>
    <div class="message-content js-messageContent"><div class="message-userContent lbContainer js-lbContainer">
      <article class="message-body js-selectToQuote"><div class="bbWrapper">{body}</div>
      <div class="js-selectToQuoteEnd">&nbsp;</div></article></div>
    {edited}{signature}</div>
    <footer class="message-footer"><div class="message-actionBar actionBar"></div>{reactions}</footer></div></div></div></article>"""


def render_thread(thread: Thread, number: int, posts: list[Post], next_path: str | None) -> str:
    items = "\n".join(render_post(thread, post) for post in posts)
    body = f'<div class="block block--messages"><div class="block-body js-replyNewMessageContainer">{items}</div></div>'
    return page(thread.title, body, next_path, "windows-1252" if thread.encoding == "cp1252" else "utf-8")
