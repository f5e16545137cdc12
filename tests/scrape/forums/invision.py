"""Invision Community 4 markup (abridged): forum topic rows (`li.ipsDataItem`), topic pages of
`article.cPost` comments with the words in `[data-role=commentContent]`, ipsPagination links."""

from __future__ import annotations

from html import escape

from tests.scrape.forums.content import Post, Quote, Row, Thread

# An "alice and bob" reaction blurb shows one count per kind of reaction: a post's likes split in two.
REACTIONS = ("Like", "Thanks")


def list_path(page: int) -> str:
    return "/forum/2-skiing/" + (f"page/{page}/" if page > 1 else "")


def thread_path(thread: Thread, page: int) -> str:
    return f"/topic/{thread.id}-{thread.slug}/" + (f"page/{page}/" if page > 1 else "")


def ips_time(moment) -> str:  # type: ignore[no-untyped-def]
    return (
        f'<time datetime="{moment:%Y-%m-%dT%H:%M:%SZ}" title="{moment:%m/%d/%Y %I:%M  %p}" '
        f'data-short="5 yr">{moment:%B %d, %Y}</time>'
    )


def page(title: str, body: str, next_path: str | None, charset: str = "UTF-8") -> str:
    if next_path:
        head_link = f'<link rel="next" href="{escape(next_path)}">'
        nav = f'<li class="ipsPagination_next"><a href="{escape(next_path)}" rel="next" data-page="2">Next</a></li>'
    else:
        head_link, nav = "", '<li class="ipsPagination_next ipsPagination_inactive"><a href="#">Next</a></li>'
    return f"""<!DOCTYPE html>
<html lang="en-US" dir="ltr">
<head><meta charset="{charset}"><title>{escape(title)} - Ski Club</title>{head_link}</head>
<body class="ipsApp ipsApp_front ipsJS_none ipsClearfix" data-controller="core.front.core.app">
<main id="ipsLayout_body" class="ipsLayout_container"><div id="ipsLayout_contentArea"><div id="ipsLayout_contentWrapper">
<div id="ipsLayout_mainArea">
<div class="ipsPageHeader ipsClearfix"><h1 class="ipsType_pageTitle ipsContained_container">
  <span class="ipsType_break ipsContained"><span>{escape(title)}</span></span></h1></div>
<div data-role="tablePagination"><ul class="ipsPagination" data-pages="2">
  <li class="ipsPagination_page ipsPagination_active"><a href="#">1</a></li>{nav}</ul></div>
{body}
</div></div></div></main>
<p id="elCopyright"><a rel="nofollow" title="Invision Community" href="https://www.invisioncommunity.com/">Powered by
  Invision Community</a></p></body></html>"""


def render_list(rows: list[Row], next_path: str | None, number: int) -> str:
    items = "\n".join(
        f"""<li class="ipsDataItem ipsDataItem_responsivePhoto" data-rowID="{i + 1}" data-location=""
  data-controller="forums.front.forum.topicRow">
  <div class="ipsDataItem_main"><h4 class="ipsDataItem_title ipsContained_container">
    <span class="ipsType_break ipsContained"><a href="{escape(row.url)}" class="" title="" data-ipsHover
      data-ipsHover-target="{escape(row.url)}?preview=1"><span>{escape(row.title)}</span></a></span></h4>
    <div class="ipsDataItem_meta ipsType_reset ipsType_light ipsType_blendLinks"><span>By <a
      href="/profile/3-{row.starter}/" class="ipsType_break">{row.starter}</a>,</span></div></div>
  <ul class="ipsDataItem_stats">
    <li><span class="ipsDataItem_stats_number">{row.replies}</span> <span class="ipsDataItem_stats_type">replies</span></li>
    <li class="ipsType_light"><span class="ipsDataItem_stats_number">121</span> <span class="ipsDataItem_stats_type">views</span></li></ul>
  <ul class="ipsDataItem_lastPoster ipsDataItem_withPhoto ipsType_blendLinks">
    <li><a href="/profile/4-someone/" class="ipsType_break">someone</a></li>
    <li class="ipsType_light"><a href="{escape(row.url)}?do=getLastComment" title="Go to last post"
      class="ipsType_blendLinks">{ips_time(row.last_post_at)}</a></li></ul>
</li>"""
        for i, row in enumerate(rows)
    )
    body = (
        f'<ol class="ipsClear ipsDataList cForumTopicTable cTopicList" data-role="tableRows">\n{items}\n</ol>'
    )
    return page("Skiing", body, next_path)


def render_quote(quote: Quote) -> str:
    inner = render_quote(quote.inner) if quote.inner else ""
    return (
        f'<blockquote class="ipsQuote" data-ipsquote="" data-ipsquote-username="{quote.author}" '
        f'data-cite="{quote.author}" data-ipsquote-contentapp="forums"><div class="ipsQuote_citation">'
        f'{quote.author} said:</div><div class="ipsQuote_contents">{inner}<p>{escape(quote.words)}</p></div>'
        f"</blockquote>"
    )


def reactions(post: Post) -> str:
    if not post.likes:
        return ""
    counts = [post.likes - post.likes // 2, post.likes // 2]
    items = "".join(
        f'<li class="ipsReact_reactCount"><a href="/topic/1/?do=showReactionsComment&amp;reaction={n}"'
        f' data-ipsTooltip title="{name}"><span><img src="/uploads/reactions/react_{name.lower()}.png"'
        f' alt="{name}" loading="lazy"></span><span>{count}</span></a></li>'
        for n, (name, count) in enumerate(zip(REACTIONS, counts), start=1)
        if count
    )
    return (
        f'<div class="ipsReact ipsPos_right"><div class="ipsReact_blurb" data-role="reactionBlurb">'
        f'<ul class="ipsReact_reactions">{items}</ul></div></div>'
    )


def render_post(thread: Thread, post: Post) -> str:
    author = f"""<aside class="ipsComment_author cAuthorPane ipsColumn ipsColumn_medium ipsResponsive_hidePhone">
    <h3 class="ipsType_sectionHead cAuthorPane_author ipsType_blendLinks ipsType_break"><strong><a
      href="/profile/3-{post.author}/" class="ipsType_break">{post.author}</a></strong></h3>
    <ul class="cAuthorPane_info ipsList_reset"><li data-role="group">Members</li><li data-role="posts">12 posts</li></ul>
  </aside>"""
    if post.deleted:
        return f"""<article id="elComment_{post.id}" class="cPost ipsBox ipsComment ipsModerated ipsClearfix">{author}
  <div class="ipsColumn ipsColumn_fluid"><div class="cPost_contentWrap"><div data-role="commentContent"
    class="ipsType_normal ipsType_richText">This post was hidden by a moderator.</div></div></div></article>"""
    body = (render_quote(post.quote) if post.quote else "") + f"<p>{escape(post.words)}"
    if post.link:
        body += f' <a href="{post.link[0]}" rel="external nofollow">{post.link[1]}</a>.'
    body += "</p>"
    if post.edited:
        body += (
            f'<p><span class="ipsType_reset ipsType_medium ipsType_light" data-excludequote><strong>Edited '
            f"{ips_time(post.at)} by {post.author}</strong></span></p>"
        )
    signature = (
        (
            f'<div data-role="memberSignature" class="ipsResponsive_hidePhone ipsPadding ipsClearfix">'
            f'<div class="ipsType_light ipsType_richText" data-ipsLazyLoad><p>{escape(post.signature)}</p></div>'
            f"</div>"
        )
        if post.signature
        else ""
    )
    return f"""<a id="comment-{post.id}"></a>
<article id="elComment_{post.id}" class="cPost ipsBox ipsResponsive_pull ipsComment ipsComment_parent ipsClearfix ipsClear
  ipsColumns ipsColumns_noSpacing ipsColumns_collapsePhone">
  {author}
  <div class="ipsColumn ipsColumn_fluid ipsMargin:none"><div id="comment-{post.id}_wrap"
    data-controller="core.front.core.comment" data-commentID="{post.id}" class="ipsComment_content ipsType_medium">
    <div class="ipsComment_meta ipsType_light ipsFlex ipsFlex-ai:center ipsFlex-jc:between ipsFlex-fd:row-reverse">
      <div class="ipsType_reset ipsType_light ipsType_blendLinks ipsFlex-flex:11"><a href="/topic/{thread.id}-{thread.slug}/?do=findComment&amp;comment={post.id}"
        class="ipsType_blendLinks">Posted {ips_time(post.at)}</a></div></div>
    <div class="cPost_contentWrap"><div data-role="commentContent" class="ipsType_normal ipsType_richText ipsPadding_bottom ipsContained"
      data-controller="core.front.core.lightboxedImages">{body}</div>
      <div class="ipsItemControls"><div data-controller="core.front.core.reaction" class="ipsItemControls_right ipsClearfix">
        {reactions(post)}</div></div>
      {signature}
    </div></div></div>
</article>"""


def render_thread(thread: Thread, number: int, posts: list[Post], next_path: str | None) -> str:
    items = "\n".join(render_post(thread, post) for post in posts)
    body = f'<div class="cTopic ipsClear ipsSpacer_top"><div data-role="commentFeed">\n{items}\n</div></div>'
    return page(thread.title, body, next_path, "windows-1252" if thread.encoding == "cp1252" else "UTF-8")
