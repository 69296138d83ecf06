"""The dashboard host: / serves the Vite build, /assets/* its hashed files, and a clear page when not built."""

from __future__ import annotations

from pathlib import Path

from serving import create_app


def app_with_static(folder: Path):
    return create_app({"CONSUMER_ENABLED": False, "STATIC_DIR": str(folder), "BOOTSTRAP_SERVERS": "127.0.0.1:1"})


def test_not_built_dashboard_says_how_to_build_it(tmp_path: Path) -> None:
    client = app_with_static(tmp_path / "missing").test_client()
    response = client.get("/")
    assert response.status_code == 503 and response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert "has not been built" in text and "npm run build" in text
    assert client.get("/api/v1/health").status_code == 200  # the API works meanwhile


def test_built_dashboard_and_assets(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text('<!doctype html><script type="module" src="/assets/app-1a2b.js"></script>')
    (tmp_path / "assets" / "app-1a2b.js").write_text("console.log('dashboard')")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    client = app_with_static(tmp_path).test_client()
    index = client.get("/")
    assert index.status_code == 200 and b"/assets/app-1a2b.js" in index.data
    assert index.headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in index.headers["Content-Security-Policy"]
    asset = client.get("/assets/app-1a2b.js")
    assert asset.status_code == 200 and asset.mimetype in ("text/javascript", "application/javascript")
    assert "max-age=31536000" in asset.headers["Cache-Control"]
    assert client.get("/favicon.svg").status_code == 200
    missing = client.get("/assets/nope.js")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == 404
    assert client.get("/assets/../index.html").status_code == 404  # no escaping the folder
