"""Site profiles: one module per forum engine; each reads that engine's thread lists and thread pages."""

from __future__ import annotations

from typing import Protocol

from forumtune.config import ScrapeConfig
from forumtune.errors import ConfigError
from forumtune.scrape.models import ThreadListPage, ThreadPage

AUTO = "auto"  # scrape.site: the first page fetched decides the profile


class SiteProfile(Protocol):
    name: str

    def list_url(self, url: str) -> str:
        """The address to fetch for a page the user names (an API address, for JSON engines)."""
        ...

    def parse_thread_list(self, text: str, page_url: str) -> ThreadListPage: ...

    def parse_thread_page(self, text: str, page_url: str) -> ThreadPage: ...


def builtin_profiles() -> dict[str, SiteProfile]:
    from forumtune.scrape.sites import discourse, invision, mybb, newschoolers, phpbb, smf, vbulletin, xenforo

    engines = [phpbb, vbulletin, xenforo, discourse, smf, mybb, invision, newschoolers]
    profiles: dict[str, SiteProfile] = {engine.PROFILE.name: engine.PROFILE for engine in engines}
    profiles["demo"] = newschoolers.PROFILE  # the bundled demo forum is written in that layout
    return profiles


def get_profile(config: ScrapeConfig) -> SiteProfile:
    if config.site == "generic" and config.selectors is not None:  # the config requires them for generic
        from forumtune.scrape.sites.markup import MarkupProfile

        return MarkupProfile("generic", config.selectors)
    profiles = builtin_profiles()
    if config.site == AUTO:
        raise ConfigError(
            "scrape.site is auto: the crawl decides the profile from the first page it fetches; "
            "name one (`forumtune scrape CONFIG --probe URL` says which) to read pages without a crawl"
        )
    if config.site not in profiles:
        raise ConfigError(
            f"scrape.site {config.site!r} is unknown; pick one of {[*sorted(profiles), 'generic', AUTO]} "
            "(`forumtune scrape CONFIG --probe URL` tells which fits a page)"
        )
    return profiles[config.site]
