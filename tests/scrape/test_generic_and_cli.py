"""The `generic` profile (selectors in the YAML), config errors, and `forumtune scrape --json / --probe`."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from forumtune.cli import app
from forumtune.config import load_config
from forumtune.errors import ConfigError
from forumtune.scrape.crawler import crawl
from forumtune.scrape.sites import get_profile
from tests.conftest import write_config
from tests.scrape.conftest import stored_posts
from tests.scrape.forums import phpbb
from tests.scrape.forums.content import Forum, write_forum
from tests.scrape.forums.server import serve_forum

GENERIC_YAML = """
name: my-forum
scrape:
  url: /viewforum.php?f=2
  site: generic
  requests_per_second: 0
  selectors:
    thread_row: li.row
    thread_link: a.topictitle
    thread_last_post: dd.lastpost time
    next_page: a[rel=next]
    post: div.post
    post_author: p.author a.username
    post_date: p.author time
    post_body: div.content
    quote: blockquote
    signature: div.signature
    remove: [blockquote cite, div.notice]
    deleted: .deleted
"""


def test_generic_profile_reads_a_forum_with_selectors_from_the_yaml(tmp_path):
    config_path = tmp_path / "forum.yaml"
    config_path.write_text(GENERIC_YAML)
    config = load_config(config_path, [])
    write_forum(phpbb, Forum(), tmp_path / "forum")
    with serve_forum(tmp_path / "forum") as (base_url, _):
        summary = crawl(
            config.scrape, tmp_path / "forum.sqlite", base_url + config.scrape.url, show_progress=False
        )
    assert (summary.threads, summary.posts) == (3, 8)
    waxing = stored_posts(tmp_path / "forum.sqlite")["Waxing skis at home"]
    assert waxing[1]["quotes"] == ["What wax do you all use for cold snow?"]
    assert waxing[0]["signature"] == "-- alice, Tahoe local"


def test_generic_without_selectors_and_unknown_sites_are_config_errors(tmp_path):
    config_path = tmp_path / "forum.yaml"
    raw = yaml.safe_load(GENERIC_YAML)
    del raw["scrape"]["selectors"]
    config_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="scrape.selectors is missing"):
        load_config(config_path, [])
    config = load_config(config_path, ["scrape.site=ubbthreads"])
    with pytest.raises(
        ConfigError, match=r"scrape.site 'ubbthreads' is unknown; pick one of .*phpbb.*generic"
    ):
        get_profile(config.scrape)


def test_scrape_json_prints_the_summary_and_probe_names_the_profile(tmp_path):
    config = write_config(tmp_path, scrape={"requests_per_second": 0, "max_threads": 3})
    result = CliRunner().invoke(app, ["scrape", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["threads"], summary["new_threads"], summary["errors"]) == (3, 3, {})
    assert summary["posts"] > 0 and summary["pages_per_second"] > 0

    thread_page = "/threads/1001-best-all-mountain-ski-for-the-east-coast/"
    result = CliRunner().invoke(app, ["scrape", str(config), "--probe", thread_page, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["best"], report["page_kind"]) == ("newschoolers", "thread page")
    best = next(reading for reading in report["readings"] if reading["profile"] == "newschoolers")
    assert best["posts"][0]["author"] == "powderhound22"
    assert best["next_url"].endswith(thread_page + "page-2.html")
