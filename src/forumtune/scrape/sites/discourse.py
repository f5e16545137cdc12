"""Discourse, through its JSON API: /latest.json (or /c/<category>.json) lists topics, /t/<slug>/<id>.json
gives a topic's posts 20 at a time (?page=N). Posts are HTML ("cooked"); quotes are <aside class="quote">."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from forumtune.forum_store import ScrapedPost, ThreadRef
from forumtune.scrape.models import ThreadListPage, ThreadPage
from forumtune.scrape.sites.html import drop_all, links_in, node_text, parse_date

LIKE_ACTION = 2  # post_action_types: 2 is "like"
POSTS_PER_PAGE = 20  # Discourse's default chunk size for /t/<id>.json?page=N; topics also say "chunk_size"
# Written by Discourse around what a post links or shows, never the member's words: the preview of a linked
# page (a onebox: the remote page's title and blurb) and an image's caption ("image 640×443 94.7 KB").
LINK_PREVIEW = "aside.onebox"
LIGHTBOX_CAPTION = "div.lightbox-wrapper div.meta"


def json_url(url: str) -> str:
    """The API address of a Discourse page: /latest → /latest.json, / → /latest.json."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or "/latest"
    if not path.endswith(".json"):
        path += ".json"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def page_number(url: str) -> int:
    values = parse_qs(urlsplit(url).query).get("page", ["1"])
    return int(values[0]) if values[0].isdigit() else 1


def with_page(url: str, page: int) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query["page"] = str(page)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def parse_cooked(cooked: str, page_url: str) -> tuple[str, list[str], list[str]]:
    """(own words, quotes, links) of a post's HTML."""
    tree = HTMLParser(f"<div>{cooked}</div>")
    body = tree.css_first("div")
    if body is None:
        return "", [], []
    drop_all(body, LIGHTBOX_CAPTION)
    quotes: list[str] = []
    while (aside := body.css_first("aside.quote")) is not None:
        drop_all(aside, "aside.quote", keep_root=True)  # a quote keeps the quoted post's own words
        quoted = aside.css_first("blockquote") or aside
        quotes.append(node_text(quoted).strip())
        aside.decompose()
    links = links_in(body, page_url)  # a link preview's address is still a link the post gives
    drop_all(body, LINK_PREVIEW)
    return node_text(body).strip(), [quote for quote in quotes if quote], links


def parse_post(post: dict[str, Any], page_url: str) -> ScrapedPost | None:
    if (
        post.get("deleted_at")
        or post.get("user_deleted")
        or post.get("hidden")
        or post.get("post_type", 1) != 1
    ):
        return None  # deleted, hidden, or a moderator action / whisper rather than a post
    text, quotes, links = parse_cooked(post.get("cooked") or "", page_url)
    return ScrapedPost(
        external_id=str(post["id"]) if "id" in post else None,
        author=post.get("username"),
        posted_at=parse_date(post.get("created_at")),
        text=text,
        quotes=quotes,
        signature=None,
        links=links,
        likes=like_count(post),
        accepted=bool(post.get("accepted_answer")),  # the discourse-solved plugin's mark
    )


def like_count(post: dict[str, Any]) -> int:
    """Likes: `like_count` where the API gives it, else the like action (id 2) of `actions_summary`."""
    if isinstance(post.get("like_count"), int):
        return post["like_count"]
    for action in post.get("actions_summary") or []:
        if action.get("id") == LIKE_ACTION:
            return int(action.get("count") or 0)
    return 0


class DiscourseProfile:
    name = "discourse"

    def list_url(self, url: str) -> str:
        return json_url(url)

    def parse_thread_list(self, text: str, page_url: str) -> ThreadListPage:
        data = json.loads(text)
        topic_list = data.get("topic_list") or {}
        threads = [
            ThreadRef(
                url=urljoin(page_url, f"/t/{topic.get('slug') or 'topic'}/{topic['id']}.json"),
                title=topic.get("title") or "",
                external_id=str(topic["id"]),
                last_post_at=parse_date(topic.get("last_posted_at") or topic.get("bumped_at")),
                replies=str(topic.get("posts_count", "")) or None,
            )
            for topic in topic_list.get("topics", [])
            if "id" in topic
        ]
        more = topic_list.get("more_topics_url")
        return ThreadListPage(threads=threads, next_url=json_url(urljoin(page_url, more)) if more else None)

    def parse_thread_page(self, text: str, page_url: str) -> ThreadPage:
        data = json.loads(text)
        raw_posts = (data.get("post_stream") or {}).get("posts", [])
        posts = [post for raw in raw_posts if (post := parse_post(raw, page_url))]
        page = page_number(page_url)
        per_page = int(data.get("chunk_size") or POSTS_PER_PAGE)
        more = bool(raw_posts) and int(data.get("posts_count", 0)) > page * per_page
        return ThreadPage(
            title=data.get("title"), posts=posts, next_url=with_page(page_url, page + 1) if more else None
        )


PROFILE = DiscourseProfile()
