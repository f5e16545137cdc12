"""Site profiles: one module per forum markup; each knows how to read thread lists and thread pages."""

from __future__ import annotations

from typing import Protocol

from forumtune.errors import ConfigError
from forumtune.scrape.models import ThreadListPage, ThreadPage


class SiteProfile(Protocol):
    name: str

    def parse_thread_list(self, html: str, page_url: str) -> ThreadListPage: ...

    def parse_thread_page(self, html: str, page_url: str) -> ThreadPage: ...


def get_profile(name: str) -> SiteProfile:
    from forumtune.scrape.sites import demo

    profiles: dict[str, SiteProfile] = {"demo": demo.PROFILE}
    if name not in profiles:
        raise ConfigError(f"scrape.site {name!r} is unknown; available site profiles: {sorted(profiles)}")
    return profiles[name]
