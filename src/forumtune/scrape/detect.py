"""`scrape.site: auto`: the first page of a crawl decides the site profile, scored as `--probe` scores it."""

from __future__ import annotations

from forumtune.config import ScrapeConfig
from forumtune.errors import ScrapeError
from forumtune.scrape.fetcher import Fetcher, FetchFailed
from forumtune.scrape.probe import best_reading, candidate_profiles, read_with_profiles
from forumtune.scrape.summary import first_list_failure


async def choose_profile(fetcher: Fetcher, config: ScrapeConfig, url: str) -> tuple[str, dict[str, str]]:
    """The name of the profile that reads the page at url best, and the pages fetched to find it out
    (by address), so the crawl does not fetch them again."""
    readings, texts = await read_with_profiles(fetcher, candidate_profiles(config), url)
    if isinstance(failure := texts.get(url), FetchFailed):
        raise ScrapeError(first_list_failure(url, failure))
    best = best_reading(readings)
    if best is None:
        raise ScrapeError(
            f"scrape.site is auto but no site profile finds threads or posts at {url}: check scrape.url points "
            "at the forum's thread list; `forumtune scrape CONFIG --probe URL` shows what each profile reads, "
            "and scrape.site: generic with scrape.selectors reads any other layout"
        )
    return best.profile, {address: text for address, text in texts.items() if isinstance(text, str)}
