"""MyBB 1.8 default-theme markup (abridged), after its templates forumdisplay_thread, postbit,
postbit_signature, mycode_quote_post and multipage_nextpage (install/resources/mybb_theme.xml)."""

from __future__ import annotations

from html import escape

from tests.scrape.forums.content import Post, Quote, Row, Thread


def list_path(page: int) -> str:
    return "/forumdisplay.php?fid=2" + (f"&page={page}" if page > 1 else "")


def thread_path(thread: Thread, page: int) -> str:
    return f"/showthread.php?tid={thread.id}" + (f"&page={page}" if page > 1 else "")


def mybb_date(moment) -> str:  # type: ignore[no-untyped-def]
    return moment.strftime("%m-%d-%Y, %I:%M %p")


def page(title: str, body: str, next_path: str | None, charset: str = "UTF-8") -> str:
    nav = f' <a href="{escape(next_path)}" class="pagination_next">Next &raquo;</a>' if next_path else ""
    return f"""<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xml:lang="en" lang="en" xmlns="http://www.w3.org/1999/xhtml">
<head><title>{escape(title)}</title><meta http-equiv="Content-Type" content="text/html; charset={charset}" /></head>
<body><div id="container"><div id="content"><div class="wrapper">
<div class="navigation"><a href="/index.php">Ski Club</a> &rsaquo; <a href="/forumdisplay.php?fid=2">Skiing</a>
  &rsaquo; <span class="active">{escape(title)}</span></div>
<div class="float_left"><div class="pagination"><span class="pages">Pages (2):</span>
  <span class="pagination_current">1</span>{nav}</div></div>
{body}
</div></div><div id="footer"><div class="lower"><span id="copyright">Powered By <a href="https://mybb.com"
  target="_blank" rel="noopener">MyBB</a>, &copy; 2002-2026 MyBB Group.</span></div></div></div></body></html>"""


def render_list(rows: list[Row], next_path: str | None, number: int) -> str:
    items = "\n".join(
        f"""<tr class="inline_row">
  <td align="center" class="trow1 forumdisplay_regular" width="2%"><span class="thread_status dot_folder" title="No new posts.">&nbsp;</span></td>
  <td align="center" class="trow1 forumdisplay_regular" width="2%">&nbsp;</td>
  <td class="trow1 forumdisplay_regular"><div>
    <span><span class=" subject_old" id="tid_{i + 1}"><a href="{escape(row.url)}">{escape(row.title)}</a></span></span>
    <div><span class="author smalltext"><a href="/member.php?action=profile&amp;uid=3">{row.starter}</a>, </span></div></div></td>
  <td align="center" class="trow1 forumdisplay_regular"><a href="/misc.php?action=whoposted&tid={i + 1}"
    onclick="MyBB.whoPosted({i + 1}); return false;">{row.replies}</a></td>
  <td align="center" class="trow1 forumdisplay_regular">121</td>
  <td class="trow1 forumdisplay_regular" style="white-space: nowrap; text-align: right;">
    <span class="lastpost smalltext">{mybb_date(row.last_post_at)}<br />
    <a href="{escape(row.url)}&amp;action=lastpost">Last Post</a>: <a href="/member.php?action=profile&amp;uid=4">someone</a></span></td>
</tr>"""
        for i, row in enumerate(rows)
    )
    body = f"""<table border="0" cellspacing="0" cellpadding="5" class="tborder clear">
<tr><td class="thead" colspan="6"><div><strong>Skiing</strong></div></td></tr>
<tr><td class="tcat" colspan="3"><span class="smalltext"><strong>Thread</strong></span></td></tr>
{items}
</table>"""
    return page("Skiing", body, next_path)


def render_quote(quote: Quote) -> str:
    inner = render_quote(quote.inner) if quote.inner else ""
    return (
        f'<blockquote class="mycode_quote"><cite><span> (01-07-2019, 07:50 PM)</span>{quote.author} Wrote: '
        f'<a href="/showthread.php?pid=1#pid1" class="quick_jump"></a></cite>{inner}{escape(quote.words)}'
        f"</blockquote><br />"
    )


def render_post(thread: Thread, number: int, post: Post) -> str:
    author = f"""<div class="post_author"><div class="author_information">
      <strong><span class="largetext"><a href="/member.php?action=profile&amp;uid=3">{post.author}</a></span></strong><br />
      <span class="smalltext">Member<br /></span></div>
    <div class="author_statistics">Posts: 12<br />Threads: 2<br />Joined: Jan 2019</div></div>"""
    if post.deleted:
        return f"""<div class="post deleted_post_collapsed" id="post_{post.id}">{author}
  <div class="post_content"><div class="post_body scaleimages" id="pid_{post.id}">This post was deleted.</div></div></div>"""
    body = (render_quote(post.quote) if post.quote else "") + escape(post.words)
    if post.link:
        body += (
            f' <a href="{post.link[0]}" target="_blank" rel="noopener" class="mycode_url">{post.link[1]}</a>.'
        )
    edited = (
        (
            f'<span class="edited_post">(This post was last modified: {mybb_date(post.at)} by '
            f'<a href="/member.php?action=profile&amp;uid=3">{post.author}</a>.)</span>'
        )
        if post.edited
        else ""
    )
    signature = (
        f'<div class="signature scaleimages">\n{escape(post.signature)}\n</div>' if post.signature else ""
    )
    return f"""<a name="pid{post.id}" id="pid{post.id}"></a>
<div class="post " style="" id="post_{post.id}">
{author}
<div class="post_content">
  <div class="post_head">
    <div class="float_right" style="vertical-align: top"><strong><a href="/showthread.php?pid={post.id}#pid{post.id}"
      title="Re: {escape(thread.title)}">#{number}</a></strong></div>
    <span class="post_date">{mybb_date(post.at)} <span class="post_edit" id="edited_by_{post.id}">{edited}</span></span>
  </div>
  <div class="post_body scaleimages" id="pid_{post.id}">
    {body}
  </div>
  {signature}
  <div class="post_meta" id="post_meta_{post.id}"><div class="float_right"></div></div>
</div>
<div class="post_controls"><div class="postbit_buttons post_management_buttons float_right">
  <a href="/newreply.php?tid={thread.id}&amp;replyto={post.id}" title="Quote this message in a reply"
    class="postbit_quote postbit_mirage"><span>Reply</span></a></div></div>
</div>"""


def render_thread(thread: Thread, number: int, posts: list[Post], next_path: str | None) -> str:
    items = "\n".join(render_post(thread, i + 1, post) for i, post in enumerate(posts))
    body = f"""<table border="0" cellspacing="0" cellpadding="5" class="tborder tfixed clear">
<tr><td class="thead"><div class="float_right"><span class="smalltext"><strong><a href="#">Threaded Mode</a></strong></span></div>
  <div><strong>{escape(thread.title)}</strong></div></td></tr></table>
<div id="posts_container"><div id="posts">
{items}
</div></div>"""
    return page(thread.title, body, next_path, "windows-1252" if thread.encoding == "cp1252" else "UTF-8")
