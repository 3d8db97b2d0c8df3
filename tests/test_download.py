"""MM-IMDb download: resumable over HTTP range requests, verified, unpacked; loopback only."""

import hashlib
import http.server
import io
import json
import os
import tarfile
import threading

import pytest

from mmgenre.data.download import download_mmimdb
from mmgenre.data.records import DataError, load_records


def _archive():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        files = {"mmimdb/split.json": json.dumps({"train": ["0000001"], "dev": [], "test": []}),
                 "mmimdb/dataset/0000001.json": json.dumps({"genres": ["Drama"], "plot": ["p"]}),
                 # incompressible padding so the archive spans several reads
                 "mmimdb/dataset/padding.bin": os.urandom(300_000).hex()}
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def server():
    """Serves one archive on 127.0.0.1 with Range support; the first full request breaks off."""
    state = {"body": _archive(), "broken": False, "ranges": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body, start = state["body"], 0
            if self.headers.get("Range"):
                start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                state["ranges"].append(start)
                self.send_response(206)
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if not state["broken"]:  # a connection lost half-way
                state["broken"] = True
                self.wfile.write(body[start:start + len(body) // 2])
                return
            self.wfile.write(body[start:])

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    # A short poll: shutdown() waits up to one interval (0.5 s by default, three times a run).
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/mmimdb.tar.gz", state
    httpd.shutdown()


def test_a_broken_download_resumes_and_unpacks_into_the_loader_layout(server, tmp_path):
    url, state = server
    digest = hashlib.sha256(state["body"]).hexdigest()
    with pytest.raises(DataError, match="rerun"):
        download_mmimdb(str(tmp_path / "mmimdb"), url, digest)
    out = download_mmimdb(str(tmp_path / "mmimdb"), url, digest)
    assert state["ranges"] == [len(state["body"]) // 2]  # resumed, not restarted
    table = load_records(out)
    assert table["genres"].tolist() == [["Drama"]]
    assert not os.path.exists(os.path.join(out, "mmimdb.tar.gz"))


def test_a_wrong_checksum_is_refused_and_the_part_removed(server, tmp_path):
    url, state = server
    state["broken"] = True
    with pytest.raises(DataError, match="SHA-256 .* differs"):
        download_mmimdb(str(tmp_path / "m"), url, "0" * 64)
    assert os.listdir(tmp_path / "m") == []


def test_a_folder_holding_the_users_files_is_never_filled(server, tmp_path):
    url, state = server
    mine = tmp_path / "mine"
    (mine / "dataset").mkdir(parents=True)
    (mine / "split.json").write_text('{"train": ["mine"]}')
    with pytest.raises(DataError, match="did not write .*'dataset'.*--overwrite"):
        download_mmimdb(str(mine), url)
    assert (mine / "split.json").read_text() == '{"train": ["mine"]}'
    assert sorted(os.listdir(mine)) == ["dataset", "split.json"]  # refused before any fetch
    with pytest.raises(DataError, match="rerun"):  # the test server breaks the first transfer
        download_mmimdb(str(tmp_path / "ours"), url)
    out = download_mmimdb(str(tmp_path / "ours"), url)
    download_mmimdb(out, url)  # a folder an earlier download finished is refilled
    assert load_records(out)["genres"].tolist() == [["Drama"]]
