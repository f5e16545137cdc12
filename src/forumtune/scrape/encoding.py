"""Turning a page's bytes into text: forums still serve windows-1252 and ISO-8859-1, often undeclared."""

from __future__ import annotations

import codecs
import re

META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)


def declared_charset(body: bytes, content_type: str) -> str | None:
    """The charset the Content-Type header or a <meta> tag near the top names, when Python knows it."""
    for candidate in (HEADER_CHARSET.search(content_type), META_CHARSET.search(body[:4096])):
        if candidate is None:
            continue
        name = candidate.group(1)
        name = name.decode("ascii", "ignore") if isinstance(name, bytes) else name
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            continue
        # Browsers read latin-1 labels as windows-1252, a superset that forums rely on for “smart quotes”.
        return "cp1252" if codec in {"latin-1", "iso8859-1", "ascii"} else codec
    return None


def decode_page(body: bytes, content_type: str = "") -> str:
    charset = declared_charset(body, content_type)
    if charset is not None:
        return body.decode(charset, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace")
