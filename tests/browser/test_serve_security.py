"""``bear serve`` answers only for its own host and sends security headers (issue 12, finding 4):
real HTTP requests and websocket handshakes against the served subprocess, and Chromium
showing the dashboard under the Content-Security-Policy without a violation."""

from __future__ import annotations

import re
import socket
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect


def _request(url: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    """One raw HTTP/1.1 request with exactly ``headers`` (Host included); status, headers, body."""
    parts = urlparse(url)
    headers = headers if "Connection" in headers else {**headers, "Connection": "close"}
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            sock.settimeout(2)
            try:
                while chunk := sock.recv(65536):
                    body += chunk
            except OSError:
                pass
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    got = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        got[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), got, body.decode("utf-8", "replace")


def _own(served) -> str:
    return urlparse(served.url).netloc


def _handshake(served, host: str, origin: str, token: str) -> int:
    status, _, _ = _request(
        served.url,
        "/ws",
        {
            "Host": host,
            "Origin": origin,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": f"bokeh, {token}",
        },
    )
    return status


def _token(served) -> str:
    status, _, page = _request(served.url, "/", {"Host": _own(served)})
    assert status == 200
    match = re.search(r'"token"\s*:\s*"([^"]+)"', page) or re.search(
        r"&quot;token&quot;:&quot;([^&]+)&quot;", page
    )
    assert match, "no session token in the page"
    return match.group(1)


def test_page_has_security_headers(served):
    status, headers, _ = _request(served.url, "/", {"Host": _own(served)})
    assert status == 200
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert "default-src 'self'" in csp
    assert not any(h.startswith("access-control-") for h in headers)


@pytest.mark.parametrize(
    "path", ["/", "/static/js/bokeh.min.js", "/autoload.js?bokeh-autoload-element=x"]
)
def test_other_hosts_are_refused(served, path):
    port = urlparse(served.url).port
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", ""):
        status, _, body = _request(served.url, path, {"Host": host})
        assert status == 400, (host, path, status)
        assert "does not answer to the host" in body or host == ""


def test_autoload_sends_no_cors_with_credentials(served):
    status, headers, _ = _request(
        served.url,
        "/autoload.js?bokeh-autoload-element=x",
        {"Host": _own(served), "Origin": "http://evil.example", "Cookie": "a=b"},
    )
    assert "access-control-allow-origin" not in headers
    assert "access-control-allow-credentials" not in headers
    assert status in (200, 400, 404)


def test_dns_rebinding_websocket_is_refused(served):
    token = _token(served)
    port = urlparse(served.url).port
    own = _own(served)
    # the served host itself is accepted (so the refusals below are not a broken handshake)
    assert _handshake(served, own, f"http://{own}", token) == 101
    token = _token(served)
    # Host = Origin = a foreign name resolving here: what Tornado alone would accept
    assert _handshake(served, f"evil.example:{port}", f"http://evil.example:{port}", token) in (
        400,
        403,
    )
    # the right Host but a foreign page
    assert _handshake(served, own, f"http://evil.example:{port}", token) == 403


def test_dashboard_works_under_the_policy(served, page):
    page.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation', "
        "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    console = []
    page.on("console", lambda m: console.append(m.text))
    page.goto(served.url)
    page.locator(".bk-tab", has_text="Awaiting Release").first.wait_for()
    expect(page.locator(".tabulator-row").first).to_be_visible()
    page.locator(".bk-tab", has_text="Settings & Rules").first.click()
    # start-up settings are shown, read-only
    expect(page.get_by_role("textbox", name="Plugins dir")).to_be_disabled()
    expect(page.get_by_role("textbox", name="Rules file")).to_be_disabled()
    expect(page.get_by_role("textbox", name="SMTP host")).to_be_enabled()
    assert page.evaluate("window.__csp") == []
    assert not [m for m in console if "Content Security Policy" in m]


def test_the_dashboard_loads_everything_from_its_server(served, page):
    """Scripts, stylesheets, fonts and images all come from `bear serve` itself: a machine
    without internet access (or behind a firewall that blocks CDNs) gets the whole dashboard."""
    refused: list[str] = []

    def route(r):
        if r.request.url.startswith((served.url, served.url.replace("http", "ws"), "data:")):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(served.url)
    expect(page.locator(".tabulator-row").first).to_be_visible()
    tabs = page.locator(".bk-tab")
    for i in range(tabs.count()):
        tabs.nth(i).click()
        page.wait_for_timeout(300)
    assert refused == []
