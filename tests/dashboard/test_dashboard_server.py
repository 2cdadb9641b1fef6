"""The dashboard server: what it serves, what it refuses, and that it never writes."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from campaign_state import DASK_DASHBOARD, make_campaign, tree_state, write_png

from coron3_dask.dashboard.report import write_report
from coron3_dask.dashboard.server import DashboardServer, content_type
from coron3_dask.files.campaign_db import DB_NAME

SECRET = b"TOP SECRET outside the output root"


def request(server, path, method="GET", headers=None):
    """One raw request (the path is sent exactly as given); return (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def state(server):
    status, headers, body = request(server, "/api/state")
    assert status == 200 and headers["content-type"].startswith("application/json")
    return json.loads(body)


@pytest.fixture
def served(campaign, tmp_path):
    """The campaign served, with a secret file, symlinks and a hidden file around it."""
    root = campaign.root
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "secret_dir").mkdir()
    (tmp_path / "secret_dir" / "secret.txt").write_bytes(SECRET)
    (root / "link_out.txt").symlink_to(tmp_path / "secret.txt")
    (root / "link_dir_out").symlink_to(tmp_path / "secret_dir")
    (root / "link_db.png").symlink_to(root / DB_NAME)
    (root / "link_in.fits").symlink_to(campaign.products["alpha"][0])
    (root / ".hidden.txt").write_bytes(SECRET)
    (root / "jw_alpha" / ".jw_alpha_i2d.fits.123.partial").write_bytes(SECRET)
    (root / "notes.txt").write_text("plain notes\n")
    (root / "record.json").write_text('{"a": 1}')
    (root / "blob.xyz").write_bytes(b"\x00\x01")
    (root / "with space.txt").write_text("spaced\n")
    with DashboardServer(root) as server:
        yield server


def test_binds_loopback_by_default_and_stops(campaign):
    server = DashboardServer(campaign.root)
    assert server.host == "127.0.0.1"
    with server:
        assert server.url == f"http://127.0.0.1:{server.port}/"
        assert server.port > 0
        assert server._sockets[0].getsockname()[0] == "127.0.0.1"
        assert request(server, "/")[0] == 200
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass


def test_port_in_use_is_an_oserror(campaign):
    with DashboardServer(campaign.root) as first, pytest.raises(OSError):
        DashboardServer(campaign.root, port=first.port).start()


def test_page_is_self_contained_html(served):
    status, headers, body = request(served, "/")
    text = body.decode()
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert 'id="rows"' in text and 'id="count-done"' in text and "api/state" in text
    assert "http://" not in text.replace('href="#"', "") and "https://" not in text  # no CDN
    assert "connect-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
@pytest.mark.parametrize("path", ["/", "/api/state", "/files/notes.txt"])
def test_only_get_and_head(served, method, path):
    status, _, body = request(served, path, method=method)
    assert status == 405, (method, path, status)
    assert b"Traceback" not in body


TRAVERSALS = [
    "/files/../secret.txt",
    "/files/../../etc/passwd",
    "/files/..%2fsecret.txt",
    "/files/..%2Fsecret.txt",
    "/files/%2e%2e/secret.txt",
    "/files/%2e%2e%2fsecret.txt",
    "/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/files/%252e%252e%252fsecret.txt",
    "/files/%25252e%25252e%25252fsecret.txt",
    "/files/jw_alpha%2F..%2F..%2Fsecret.txt",
    "/files/jw_alpha/%2e%2e/%2e%2e/secret.txt",
    "/files/%2Fetc%2Fpasswd",
    "/files//etc/passwd",
    "/files/%2fetc/passwd",
    "/files/..\\secret.txt",
    "/files/..%5csecret.txt",
    "/files/notes.txt%00.png",
    "/files/link_out.txt",
    "/files/link_dir_out/secret.txt",
    "/files/link_db.png",
    f"/files/{DB_NAME}",
    f"/files/{DB_NAME}-wal",
    f"/files/./{DB_NAME}",
    "/files/.hidden.txt",
    "/files/jw_alpha/.jw_alpha_i2d.fits.123.partial",
    "/files/jw_alpha",
    "/files/jw_alpha/",
    "/files/",
    "/files/.",
    "/files/missing.png",
    "/files/%ff%fe",
    "/../secret.txt",
    "/api/../secret.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_serves_nothing_outside_or_private(served, path):
    for method in ("GET", "HEAD"):
        status, _, body = request(served, path, method=method)
        assert status in (400, 403, 404), (path, method, status)
        assert SECRET not in body and b"SQLite format" not in body and b"Traceback" not in body


def test_refuses_foreign_host_names_when_on_loopback(served):
    assert request(served, "/api/state", headers={"Host": "evil.example:80"})[0] == 403
    assert request(served, "/", headers={"Host": "attacker.test"})[0] == 403
    for host in ("localhost", f"localhost:{served.port}", f"127.0.0.1:{served.port}", "[::1]:1"):
        assert request(served, "/api/state", headers={"Host": host})[0] == 200, host


@pytest.mark.parametrize(
    ("path", "kind", "disposition"),
    [
        ("/files/campaign_thumbnails/jw_alpha.png", "image/png", "inline"),
        ("/files/jw_alpha/jw_alpha_i2d.fits", "application/fits", "attachment"),
        ("/files/link_in.fits", "application/fits", "attachment"),
        ("/files/notes.txt", "text/plain; charset=utf-8", "inline"),
        ("/files/record.json", "application/json", "inline"),
        ("/files/blob.xyz", "application/octet-stream", "attachment"),
        ("/files/with%20space.txt", "text/plain; charset=utf-8", "inline"),
    ],
)
def test_files_have_content_types_and_bytes(served, campaign, path, kind, disposition):
    status, headers, body = request(served, path)
    assert status == 200, path
    assert headers["content-type"] == kind
    assert headers["content-disposition"].startswith(disposition)
    assert "sandbox" in headers["content-security-policy"]
    relative = path.removeprefix("/files/").replace("%20", " ")
    expected = (campaign.root / relative).read_bytes()
    assert body == expected
    status, headers, body = request(served, path, method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == len(expected)


def test_content_type_table():
    assert content_type("a_i2d.fits") == "application/fits"
    assert content_type("campaign_report.html") == "text/html; charset=utf-8"
    assert content_type("x.tar.gz") == "application/gzip"
    assert content_type("A.PNG") == "image/png"
    assert content_type("noext") == "application/octet-stream"


def test_unknown_route_is_404(served):
    assert request(served, "/nope")[0] == 404
    assert request(served, "/api/other")[0] == 404


def test_api_state_content(served, campaign):
    s = state(served)
    assert s["state"] == "running"
    assert s["counts"] == {"pending": 1, "running": 1, "done": 1, "failed": 1}
    assert s["total"] == 4
    rows = {r["name"]: r for r in s["associations"]}
    assert list(rows) == ["jw_alpha", "jw_beta", "jw_gamma", "delta_asn.json"]
    assert rows["jw_alpha"]["files_dir"] == "jw_alpha"
    assert rows["jw_alpha"]["thumbnail"] == "campaign_thumbnails/jw_alpha.png"
    assert [p["name"] for p in rows["jw_alpha"]["products"]] == ["jw_alpha_i2d.fits", "jw_alpha_psfsub.fits"]
    assert sorted(rows["jw_alpha"]["workers"]) == ["tcp://127.0.0.1:40001", "tcp://127.0.0.1:40002"]
    assert rows["jw_gamma"]["step"] == "klip" and rows["jw_gamma"]["tasks_done"] == 3
    assert rows["jw_beta"]["attempts"] == 2 and rows["jw_beta"]["error"].startswith("ValueError")
    assert s["session"]["dask_dashboard"] == DASK_DASHBOARD
    assert len(s["spans"]) == 4
    d = s["derived"]
    assert d["done_this_session"] == 1 and d["remaining"] == 2
    assert d["throughput_per_hour"] == pytest.approx(3600 / d["elapsed"], rel=0.05)
    assert d["eta_seconds"] == pytest.approx(2 * d["elapsed"], rel=0.05, abs=0.5)
    assert s["links"]["report"] is None
    write_report(campaign.root)
    time.sleep(0.6)  # the state is cached for half a second
    assert state(served)["links"]["report"] == "files/campaign_report.html"
    status, headers, body = request(served, "/files/campaign_report.html")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8" and b"<svg" in body


def test_serving_changes_nothing_in_the_root(campaign):
    root = campaign.root
    write_png(root / "campaign_thumbnails" / "jw_beta.png", seed=1)
    before = tree_state(root)
    digest = hashlib.sha256((root / DB_NAME).read_bytes()).hexdigest()
    with DashboardServer(root) as server:
        for _ in range(3):
            state(server)
            time.sleep(0.55)
        for path in ("/", "/files/campaign_thumbnails/jw_alpha.png", "/files/jw_alpha/jw_alpha_i2d.fits", "/nope"):
            request(server, path)
            request(server, path, method="HEAD")
            request(server, path, method="POST")
    assert tree_state(root) == before
    assert hashlib.sha256((root / DB_NAME).read_bytes()).hexdigest() == digest
    assert not list(root.glob(f"{DB_NAME}-*"))


def test_missing_database_and_missing_root(tmp_path):
    root = tmp_path / "not_yet"
    with DashboardServer(root) as server:
        s = state(server)
        assert s["state"] == "waiting" and "No campaign database" in s["message"]
        assert s["total"] == 0 and s["associations"] == []
        assert request(server, "/")[0] == 200
        assert request(server, "/files/anything.png")[0] == 404
        root.mkdir()
        time.sleep(0.55)
        assert state(server)["state"] == "waiting"
        assert list(root.iterdir()) == []  # and nothing created
        make_campaign(root)
        time.sleep(0.55)
        assert state(server)["state"] == "running"
    assert not (tmp_path / "not_yet" / f"{DB_NAME}-wal").exists()


def test_unusable_database_is_reported(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    with DashboardServer(tmp_path) as server:
        s = state(server)
    assert s["state"] == "error" and DB_NAME in s["message"]


def test_reads_while_a_writer_commits(tmp_path):
    camp = make_campaign(tmp_path / "out", keep_open=True)
    db, gamma = camp.db, camp.ids["gamma"]
    stop = threading.Event()
    written = []

    def write() -> None:
        k = 0
        while not stop.is_set():
            k += 1
            db.progress(gamma, "resample", k, 10_000)
            written.append(k)

    writer = threading.Thread(target=write)
    seen = []
    with DashboardServer(camp.root) as server:
        writer.start()
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                s = state(server)
                assert s["state"] == "running", s["message"]
                assert sum(s["counts"].values()) == s["total"] == 4
                seen.append(next(r for r in s["associations"] if r["id"] == gamma)["tasks_done"])
                time.sleep(0.1)
        finally:
            stop.set()
            writer.join()
    camp.close()
    assert len(written) > 10 and len(set(seen)) > 2  # the page follows the writer
    assert seen == sorted(seen)


def test_cli_serves_until_interrupted(campaign):
    script = (
        "import argparse, sys\n"
        "from coron3_dask.cli import dashboard\n"
        "parser = argparse.ArgumentParser(); sub = parser.add_subparsers(dest='command')\n"
        "dashboard.add_parser(sub, argparse.ArgumentParser(add_help=False))\n"
        "sys.exit(dashboard.handle(parser.parse_args(sys.argv[1:])))\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "dashboard", str(campaign.root), "--address", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Campaign dashboard: http://127.0.0.1:"), line
        url = line.split()[2]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/state")
        assert json.loads(conn.getresponse().read())["total"] == 4
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_cli_address_parsing():
    from coron3_dask.cli.dashboard import parse_address
    from coron3_dask.config import ConfigError

    assert parse_address("127.0.0.1:8788") == ("127.0.0.1", 8788)
    assert parse_address(":0") == ("127.0.0.1", 0)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("8788", "host:port", "h:70000", "h:-1"):
        with pytest.raises(ConfigError):
            parse_address(bad)
