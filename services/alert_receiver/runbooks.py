"""alert-receiver: the runbook pages.

Every alert's ``runbook_url`` (``http://localhost:8095/runbooks/<AlertName>.md``) resolves here:
``GET /runbooks/`` lists the pages, ``GET /runbooks/<AlertName>.md`` renders one as HTML, and
``?raw=1`` (or ``Accept: text/markdown``) returns the markdown itself. The pages are read from
``runbooks/`` of the repository, or from ``$OBSLAB_RUNBOOKS_DIR`` (a container image ships them
elsewhere). A page name is checked before it touches the filesystem, and the markdown is
rendered with raw HTML off: markup in a page is shown, never run.
"""

from __future__ import annotations

import html
from pathlib import Path

from flask import Flask, Response, request
from markdown_it import MarkdownIt

from obslab import settings
from obslab.platform.errors import ApiError
from obslab.services.alert_receiver.links import _RUNBOOK_PAGE, RUNBOOKS_PATH

_RUNBOOK_INDEX_PAGE = "README.md"
MARKDOWN_CONTENT_TYPE = "text/markdown; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"


# CommonMark with raw HTML off (markup in a page is shown, never run) plus GFM tables, which
# every runbook opens with. markdown-it refuses javascript:, vbscript:, file: and data: links.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def runbook_pages(directory: Path) -> list[str]:
    """The page names served from ``directory`` (the index README excluded), sorted."""
    if not directory.is_dir():
        return []
    return sorted(path.name for path in directory.iterdir()
                  if _RUNBOOK_PAGE.fullmatch(path.name) and path.name != _RUNBOOK_INDEX_PAGE and path.is_file())


def _runbook_path(directory: Path, page: str) -> Path:
    # The name is checked before it touches the filesystem, so "..", "/", "%2F" and friends
    # never reach a path; anything else that is not a page is the same 404.
    if _RUNBOOK_PAGE.fullmatch(page):
        path = directory / page
        if path.is_file():
            return path
    shown = page if len(page) <= 80 else page[:77] + "..."
    raise ApiError(404, "runbook_not_found",
                   f"no runbook {shown!r}: pages are <AlertName>.md, listed at {RUNBOOKS_PATH}")


def _wants_raw() -> bool:
    raw = request.args.get("raw")
    if raw is not None:
        if raw not in ("0", "1"):
            raise ApiError(400, "invalid_raw", f"raw must be 1 (the markdown) or 0 (HTML), got {raw!r}")
        return raw == "1"
    return request.accept_mimetypes.best_match(["text/html", "text/markdown"]) == "text/markdown"


def _runbook_response(body: str) -> Response:
    response = Response(body, content_type=HTML_CONTENT_TYPE)
    response.headers["Vary"] = "Accept"
    return response


def _runbook_routes(app: Flask, directory: Path) -> None:
    @app.get(RUNBOOKS_PATH)
    def runbook_index():
        return _runbook_response(render_runbook_index(runbook_pages(directory), directory))

    @app.get(f"{RUNBOOKS_PATH}<path:page>")
    def runbook(page: str):
        path = _runbook_path(directory, page)
        if _wants_raw():
            response = Response(path.read_bytes(), content_type=MARKDOWN_CONTENT_TYPE)
            response.headers["Vary"] = "Accept"
            return response
        return _runbook_response(render_runbook(path.stem, path.read_text(encoding="utf-8")))


def default_runbooks_dir() -> Path:
    """``$OBSLAB_RUNBOOKS_DIR``, else ``runbooks/`` of the repository."""
    return settings.RUNBOOKS_DIR.get() or settings.repo_root() / "runbooks"


_RUNBOOK_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:60em;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
code{background:#f4f4f4;padding:0 .2em}pre{background:#f4f4f4;padding:.6em;overflow-x:auto}pre code{padding:0}
nav{margin-bottom:1em}.muted{color:#777}
"""


def _runbook_document(title: str, nav: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{_RUNBOOK_STYLE}</style></head><body>
<nav>{nav}</nav>
{body}</body></html>
"""


def render_runbook(name: str, markdown: str) -> str:
    """One runbook page as HTML (the page's own ``# <AlertName>`` is its heading)."""
    e = html.escape
    nav = (f'<a href="{RUNBOOKS_PATH}">all runbooks</a> &middot; '
           f'<a href="{e(RUNBOOKS_PATH + name)}.md?raw=1">markdown</a> &middot; <a href="/">notifications</a>')
    return _runbook_document(f"{name} - runbook", nav, _MARKDOWN.render(markdown))


def render_runbook_index(pages: list[str], directory: Path) -> str:
    e = html.escape
    items = "".join(f'<li><a href="{e(RUNBOOKS_PATH + page, quote=True)}">{e(page.removesuffix(".md"))}</a></li>'
                    for page in pages)
    index = ""
    if (directory / _RUNBOOK_INDEX_PAGE).is_file():
        index = (f'<p>Severity, team and meaning of every alert: '
                 f'<a href="{RUNBOOKS_PATH}{_RUNBOOK_INDEX_PAGE}">{_RUNBOOK_INDEX_PAGE}</a>.</p>')
    items = items or '<li class="muted">no runbooks found</li>'
    body = ('<h1>Runbooks</h1>\n<p class="muted">One page per alert; every alert\'s runbook_url points here.</p>\n'
            f"{index}\n<ul>{items}</ul>\n")
    return _runbook_document("Runbooks", '<a href="/">notifications</a>', body)
