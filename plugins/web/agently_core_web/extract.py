"""A fetched body as readable text: trafilatura for HTML, the text itself for text types.

HTML (``text/html``, ``application/xhtml+xml``, or a body without a type that starts like
HTML) goes through trafilatura's main-content extraction in the chosen format
(``markdown`` or ``text``) with its title; when trafilatura finds no main content (a page
that is mostly navigation) its whole-page text conversion is used instead. Plain text,
JSON, XML, CSV and similar types come back as their decoded text. Anything else (images,
PDFs, archives, octet streams) is refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fetch import BrowseError

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript",
                        "application/ld+json", "application/rss+xml", "application/atom+xml",
                        "application/x-ndjson", "application/yaml", "application/x-yaml",
                        "application/toml", "application/csv"})
FORMATS = ("markdown", "text")


class UnsupportedContent(BrowseError):
    """The response is not a kind browse can turn into text."""


@dataclass(slots=True)
class Readable:
    title: str
    content: str
    kind: str  # "html" or "text"


def kind_of(media_type: str, body: bytes) -> str | None:
    """``"html"``, ``"text"`` or ``None`` (not readable) for a response."""
    media = media_type.lower()
    if media in HTML_TYPES:
        return "html"
    if media.startswith("text/") or media in TEXT_TYPES or media.endswith(("+json", "+xml")):
        return "text"
    if media:
        return None
    head = body[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if b"\x00" in body[:4096]:
        return None
    try:
        body[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 4090:  # a character cut by the 4 KiB window is fine
            return None
    return "text"


def decode(body: bytes, charset: str | None) -> str:
    """The body as text: its declared charset, else UTF-8 (bad bytes replaced)."""
    if charset:
        try:
            return body.decode(charset, errors="replace")
        except LookupError:
            pass
    return body.decode("utf-8", errors="replace")


def readable(body: bytes, media_type: str, charset: str | None, *, url: str,
             fmt: str) -> Readable:
    """The readable form of a body (CPU work: run it in a worker thread)."""
    kind = kind_of(media_type, body)
    if kind is None:
        raise UnsupportedContent(
            f"{url} is {media_type or 'an unknown type'} ({len(body)} bytes): browse reads "
            "HTML and text pages only")
    if kind == "text":
        return Readable(title="", content=decode(body, charset), kind="text")
    import trafilatura

    source: bytes | str = decode(body, charset) if charset else body
    try:
        tree = trafilatura.load_html(source)
    except Exception:
        tree = None
    if tree is None:
        raise BrowseError(f"{url}: the HTML could not be parsed")
    metadata = trafilatura.extract_metadata(tree, default_url=url)
    title = (metadata.title or "") if metadata is not None else ""
    output = "markdown" if fmt == "markdown" else "txt"
    text = trafilatura.extract(  # parses its own copy: extraction prunes the tree it gets
        source, url=url, output_format=output,
        include_links=fmt == "markdown", include_tables=True, include_comments=False,
        favor_recall=True, deduplicate=False)
    if not text or not text.strip():
        text = trafilatura.html2txt(tree)  # the metadata pass leaves the tree whole
    return Readable(title=title.strip(), content=(text or "").strip(), kind="html")


__all__ = ["FORMATS", "Readable", "UnsupportedContent", "decode", "kind_of", "readable"]
