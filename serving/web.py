"""The dashboard: the Vite build in serving/static/ served at / and /assets/*.

If the dashboard has not been built, / answers 503 with a page that says how
to build it, and the API keeps working.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, send_from_directory

bp = Blueprint("web", __name__)

NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dark Pool Liquidity Dashboard: not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>The dashboard has not been built</h1>
<p>No <code>index.html</code> in <code>{static_dir}</code>.</p>
<p>Build it with <code>make setup</code> (or <code>cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build</code>),
then reload. The API is up meanwhile: <a href="/api/v1/status">/api/v1/status</a>,
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>
</body></html>
"""


def static_dir() -> Path:
    return Path(current_app.config["STATIC_DIR"])


@bp.get("/")
def index() -> Response:
    """The dashboard's index.html, or a page saying how to build it."""
    folder = static_dir()
    if not (folder / "index.html").is_file():
        page = NOT_BUILT_PAGE.format(static_dir=folder)
        return Response(page, status=503, mimetype="text/html")
    response = send_from_directory(folder, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/assets/<path:filename>")
def assets(filename: str) -> Response:
    """Vite's hashed build assets (cacheable for a year: their names change with their content)."""
    return send_from_directory(static_dir() / "assets", filename, max_age=31536000)


@bp.get("/<string:filename>")
def top_level_file(filename: str) -> Response:
    """Other files Vite copies to the build root (favicon, fonts...)."""
    return send_from_directory(static_dir(), filename, max_age=3600)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
