"""Reading pages: charsets forums really serve, and the date formats forum engines print."""

import pytest

from forumtune.scrape.encoding import decode_page
from forumtune.scrape.sites.html import parse_date

CAFE = "Café “real” espresso"


@pytest.mark.parametrize(
    "body, content_type",
    [
        (CAFE.encode("utf-8"), "text/html"),
        (CAFE.encode("cp1252"), "text/html; charset=windows-1252"),
        (CAFE.encode("cp1252"), "text/html; charset=ISO-8859-1"),  # browsers read latin-1 as windows-1252
        (b'<meta charset="windows-1252">' + CAFE.encode("cp1252"), "text/html"),
        (
            b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
            + CAFE.encode("cp1252"),
            "",
        ),
        (CAFE.encode("cp1252"), "text/html"),  # undeclared and not UTF-8
    ],
)
def test_pages_decode_whatever_their_charset(body, content_type):
    assert decode_page(body, content_type).endswith(CAFE)


@pytest.mark.parametrize(
    "shown, expected",
    [
        ("2019-01-07T19:50:49Z", "2019-01-07T19:50:49+00:00"),
        ("2019-01-07T20:50:49+0100", "2019-01-07T19:50:49+00:00"),
        ("1546890649", "2019-01-07T19:50:49+00:00"),
        ("Mon Jan 07, 2019 7:50 pm", "2019-01-07T19:50:00+00:00"),
        ("01-07-2019, 07:50 PM", "2019-01-07T19:50:00+00:00"),
        ("« Reply #3 on: January 07, 2019, 07:50:49 PM »", "2019-01-07T19:50:49+00:00"),
        ("Jan 7th 2019 at 7:50:49pm", "2019-01-07T19:50:49+00:00"),
        ("7 January 2019", "2019-01-07T00:00:00+00:00"),
        ("no date here", None),
    ],
)
def test_forum_dates_become_utc_iso_timestamps(shown, expected):
    assert parse_date(shown) == expected


def test_today_and_yesterday_are_relative_to_now():
    from datetime import UTC, datetime

    now = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_date("Today, 07:50 PM", now=now) == "2024-03-10T19:50:00+00:00"
    assert parse_date("Yesterday at 9:05 AM", now=now) == "2024-03-09T09:05:00+00:00"


def test_a_selector_list_prefers_its_first_alternative_over_page_order():
    from forumtune.scrape.sites.phpbb import PROFILE

    # The paragraph comes first in the page, but its prose date has no zone; the <time> inside it does.
    html = (
        '<div id="p1" class="post"><p class="author">by <a class="username">ann</a> » Tue Jan 02, 2024 '
        '10:00 am <time datetime="2024-01-02T10:00:00+01:00"></time></p><div class="content">Hi</div></div>'
    )
    (post,) = PROFILE.parse_thread_page(html, "http://127.0.0.1/viewtopic.php?t=1").posts
    assert post.posted_at == "2024-01-02T09:00:00+00:00"
