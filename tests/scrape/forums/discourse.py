"""Discourse's JSON API (abridged): /latest.json topic lists and /t/<slug>/<id>.json topic pages.

Topic pages hold `chunk_size` posts each, as Discourse's do (it says 20; here it is the size of the
topic's first page, so a short topic spans pages). A looping topic claims one post more than it has.
"""

from __future__ import annotations

import json
from html import escape

from tests.scrape.forums.content import Post, Quote, Row, Thread


def list_path(page: int) -> str:
    return "/latest.json" + (f"?page={page - 1}" if page > 1 else "")


def thread_path(thread: Thread, page: int) -> str:
    return f"/t/{thread.slug}/{thread.id}.json" + (f"?page={page}" if page > 1 else "")


def render_list(rows: list[Row], next_path: str | None, number: int) -> str:
    topics = [
        {
            "id": int(row.url.rsplit("/", 1)[1].removesuffix(".json")),
            "title": row.title,
            "fancy_title": escape(row.title),
            "slug": row.url.split("/")[2],
            "posts_count": row.replies + 1,
            "reply_count": row.replies,
            "last_posted_at": row.last_post_at.isoformat().replace("+00:00", ".000Z"),
            "bumped": True,
            "last_poster_username": "someone",
            "category_id": 5,
        }
        for row in rows
        if row.url.startswith("/t/")
    ]
    more = {"more_topics_url": f"/latest?page={number}"} if next_path else {}
    return json.dumps(
        {
            "users": [{"id": 1, "username": "someone"}],
            "topic_list": {"can_create_topic": False, "per_page": 30, **more, "topics": topics},
        }
    )


def cooked(post: Post) -> str:
    html = render_quote(post.quote, post.id) if post.quote else ""
    html += f"<p>{escape(post.words)}"
    if post.link:
        html += f' <a href="{post.link[0]}" rel="noopener nofollow ugc">{post.link[1]}</a>.'
    return html + "</p>"


def render_quote(quote: Quote, post_id: int) -> str:
    inner = render_quote(quote.inner, post_id) if quote.inner else ""
    return (
        f'<aside class="quote no-group" data-username="{quote.author}" data-post="1" data-topic="101">\n'
        f'<div class="title">\n<div class="quote-controls"></div>\n{quote.author}:</div>\n'
        f"<blockquote>\n{inner}<p>{escape(quote.words)}</p>\n</blockquote>\n</aside>\n"
    )


def render_post(post: Post, number: int) -> dict:
    return {
        "id": post.id,
        "username": post.author,
        "name": post.author.title(),
        "post_number": number,
        "created_at": post.at.isoformat().replace("+00:00", ".000Z"),
        "cooked": cooked(post),
        "post_type": 1,
        "updated_at": post.at.isoformat(),
        "version": 2 if post.edited else 1,
        "user_deleted": False,
        "deleted_at": post.at.isoformat() if post.deleted else None,
        "hidden": False,
        "actions_summary": [{"id": 2, "count": post.likes}] if post.likes else [],
        "accepted_answer": post.accepted,
    }


def render_thread(thread: Thread, number: int, posts: list[Post], next_path: str | None) -> str:
    everything = thread.posts
    total = len(everything) + (1 if thread.loops_back else 0)
    return json.dumps(
        {
            "id": thread.id,
            "title": thread.title,
            "slug": thread.slug,
            "posts_count": total,
            "chunk_size": len(thread.pages[0]),
            "post_stream": {
                "posts": [render_post(post, everything.index(post) + 1) for post in posts],
                "stream": [post.id for post in everything],
            },
        }
    )
