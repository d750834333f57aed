import hashlib
import http.server
import threading
import time
from pathlib import Path

import pytest

from compute_tasks.images import ImageCache, ImageError
from compute_tasks.rpc import ImageSpec
from tests.file_modes import mode_of

pytestmark = pytest.mark.unit

PAYLOAD = b"qcow2-ish bytes " * 4096
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
SECRET = "sig-TOPSECRET"


class ImageServer:
    """Serves ``files`` on 127.0.0.1 in a thread, counting requests per path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        self.status = 200
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                server.requests.append(path)
                body = server.files.get(path)
                if body is None or server.status != 200:
                    self.send_error(404 if body is None else server.status)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                time.sleep(server.delay)
                for start in range(0, len(body), 8192):
                    self.wfile.write(body[start : start + 8192])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_port}{path}?signature={SECRET}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    server = ImageServer()
    server.files["/images/img-1/file"] = PAYLOAD
    yield server
    server.close()


@pytest.fixture
def cache(tmp_path):
    return ImageCache(tmp_path / "images", timeout=5)


def spec(server, **overrides):
    fields = {"id": "img-1", "url": server.url("/images/img-1/file"), "sha256": DIGEST, "size": len(PAYLOAD)}
    fields.update(overrides)
    return ImageSpec(**fields)


def leftovers(directory: Path):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_a_verified_download_lands_in_the_cache(server, cache):
    path = cache.fetch(spec(server))

    assert path == cache.directory / "img-1"
    assert path.read_bytes() == PAYLOAD
    assert (cache.directory / "img-1.sha256").read_text().strip() == DIGEST
    assert leftovers(cache.directory) == []


@pytest.mark.usefixtures("loose_umask")
def test_the_cache_is_private(server, cache):
    # An image can be a project's private image: other users of the host must not read it.
    cache.directory.mkdir(mode=0o755)

    cache.fetch(spec(server))

    assert mode_of(cache.directory) == 0o700
    assert {path.name: mode_of(path) for path in cache.directory.iterdir()} == {
        "img-1": 0o600,
        "img-1.sha256": 0o600,
        ".img-1.lock": 0o600,
    }


def test_a_cached_image_is_not_downloaded_again(server, cache):
    cache.fetch(spec(server))
    cache.fetch(spec(server))

    assert server.requests == ["/images/img-1/file"]


def test_a_checksum_mismatch_deletes_the_download_and_says_so(server, cache):
    with pytest.raises(ImageError, match="has sha256 .* expected") as caught:
        cache.fetch(spec(server, sha256="f" * 64))

    assert caught.value.reschedulable is False
    assert not (cache.directory / "img-1").exists()
    assert leftovers(cache.directory) == []


def test_a_short_download_is_rejected(server, cache):
    with pytest.raises(ImageError, match="expected"):
        cache.fetch(spec(server, size=len(PAYLOAD) + 1))

    assert not (cache.directory / "img-1").exists()
    assert leftovers(cache.directory) == []


def test_a_download_larger_than_declared_is_abandoned(server, cache):
    with pytest.raises(ImageError, match="larger than its declared"):
        cache.fetch(spec(server, size=100))

    assert leftovers(cache.directory) == []


def test_concurrent_fetches_download_once(server, cache):
    server.delay = 0.3
    results, errors = [], []

    def fetch():
        try:
            results.append(cache.fetch(spec(server)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == []
    assert results == [cache.directory / "img-1"] * 6
    assert server.requests == ["/images/img-1/file"]


def test_an_http_error_is_reported_without_the_signature(server, cache):
    with pytest.raises(ImageError) as caught:
        cache.fetch(spec(server, url=server.url("/images/missing/file")))

    message = str(caught.value)
    assert "HTTP 404" in message
    assert "/images/missing/file" in message
    assert SECRET not in message


def test_an_unreachable_server_is_reported_without_the_signature(cache):
    url = f"http://127.0.0.1:1/images/img-1/file?signature={SECRET}"

    with pytest.raises(ImageError, match="ConnectionError") as caught:
        cache.fetch(ImageSpec(id="img-1", url=url, sha256=DIGEST, size=len(PAYLOAD)))

    assert SECRET not in str(caught.value)
    assert caught.value.__suppress_context__


def test_a_stalled_server_times_out(server, tmp_path):
    server.delay = 2
    cache = ImageCache(tmp_path / "images", timeout=0.3)

    with pytest.raises(ImageError, match="timed out"):
        cache.fetch(spec(server))

    assert leftovers(cache.directory) == []


def test_a_stale_cached_copy_is_replaced(server, cache):
    cache.directory.mkdir(parents=True)
    (cache.directory / "img-1").write_bytes(b"damaged")
    (cache.directory / "img-1.sha256").write_text("0" * 64)

    path = cache.fetch(spec(server))

    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["/images/img-1/file"]


@pytest.mark.parametrize("image_id", ["../etc/passwd", ".hidden", "a/b", "", "x.lock"])
def test_image_ids_that_are_not_file_names_are_refused(server, cache, image_id):
    with pytest.raises(ImageError, match="not usable as a file name"):
        cache.fetch(spec(server, id=image_id))


def test_a_request_without_a_usable_checksum_is_refused(server, cache):
    with pytest.raises(ImageError, match="sha256"):
        cache.fetch(spec(server, sha256="md5:abc"))
    assert server.requests == []
