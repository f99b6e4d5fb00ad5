"""``heirloom data fetch``: public data sets put where profiles read them, every byte checked.

Downloads come from a real HTTP server on loopback (no test reaches the internet); the
shipped catalog is checked against the real data in ../shared/data, which is byte-identical
to the pinned originals.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import run_heirloom, write

#: The data sets heirloom ships manifests for, and their file counts.
SHIPPED = {
    "banking77": 4,
    "financial-phrasebank": 6,
    "stackfaq": 2,
    "movielens-100k": 7,
    "fhir-synthea-smart-r4": 25,
    "fhir-synthea-smart-r4-331": 333,
}
NOTES = b"a note\n" * 3
TABLE = b"text,label\nhello,greeting\n"
README = "caf\u00e9 data\n".encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class Files(BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes); ``/endless`` sends bytes without end."""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/endless":
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                return
        body = self.server.files.get(self.path)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    httpd.daemon_threads = True
    httpd.files = {  # type: ignore[attr-defined]
        "/notes.txt": NOTES,
        "/toy.zip": zipped({"toy/table.csv": TABLE, "toy/README": README}),
        "/changed.txt": b"not what the catalog pinned\n",
    }
    httpd.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


PLUGIN = """
import os
import heirloom

URL = os.environ["TOY_DATA_URL"]


def files(*entries):
    return [heirloom.DataFile(**entry) for entry in entries]


@heirloom.hookimpl
def heirloom_register_datasets(register):
    register("toy", heirloom.Dataset(
        title="Toy", license="CC0", files=files(
            dict(path="docs/notes.txt", url=URL + "/notes.txt", sha256="{notes}", size={notes_size}),
            dict(path="table.csv", url=URL + "/toy.zip", member="toy/table.csv", sha256="{table}", size={table_size}),
            dict(path="README", url=URL + "/toy.zip", member="toy/README", sha256="{readme}"),
        )))
    register("toy-changed", heirloom.Dataset(
        title="Changed upstream", license="CC0",
        files=files(dict(path="changed.txt", url=URL + "/changed.txt", sha256="{notes}"))))
    register("toy-endless", heirloom.Dataset(
        title="A server that never stops", license="CC0",
        files=files(dict(path="big.bin", url=URL + "/endless", sha256="{notes}", size=1000))))
    register("toy-research", heirloom.Dataset(
        title="Research only", license="research only, no redistribution", accept_license=True,
        files=files(dict(path="notes.txt", url=URL + "/notes.txt", sha256="{notes}"))))
    register("toy-escape", heirloom.Dataset(
        title="Writes outside its folder", license="CC0",
        files=files(dict(path="../escaped.txt", url=URL + "/notes.txt", sha256="{notes}"))))
"""


@pytest.fixture
def fetcher(tmp_path, server):
    """Run ``heirloom`` with the toy data sets registered, data root ``tmp_path/data``."""
    plugin = PLUGIN.format(
        notes=sha(NOTES), notes_size=len(NOTES), table=sha(TABLE), table_size=len(TABLE), readme=sha(README)
    )
    write(tmp_path / "plugins" / "toy_datasets.py", plugin)
    env = {
        "PYTHONPATH": str(tmp_path / "plugins"),
        "HEIRLOOM_PLUGINS": "toy_datasets",
        "HEIRLOOM_DATA": str(tmp_path / "data"),
        "TOY_DATA_URL": f"http://127.0.0.1:{server.server_port}",
    }

    def run(*args: str):
        return run_heirloom("data", *args, env=env)

    run.env = env  # type: ignore[attr-defined]
    return run


def test_hook_heirloom_register_datasets(tmp_path, server, fetcher):
    """A plugin's data set is fetched into the data root: each file checked, placed where
    profiles read it (``${data}/NAME/PATH``), an archive downloaded once for its members."""
    fetched = fetcher("fetch", "toy")
    assert fetched.returncode == 0, fetched.stderr
    root = tmp_path / "data" / "toy"
    assert (root / "docs" / "notes.txt").read_bytes() == NOTES
    assert (root / "table.csv").read_bytes() == TABLE and (root / "README").read_bytes() == README
    assert "3 downloaded, 0 already there" in fetched.stdout
    assert sorted(server.requests) == ["/notes.txt", "/toy.zip"], "the archive is downloaded once for its members"
    assert sorted(p.name for p in root.rglob("*")) == ["README", "docs", "notes.txt", "table.csv"], "no temp files"

    again = fetcher("fetch", "toy")
    assert again.returncode == 0 and "3 already there" in again.stdout
    assert len(server.requests) == 2, "files already there are hashed, not downloaded again"
    listed = json.loads(fetcher("list", "--json").stdout)
    assert {row["name"]: row["present"] for row in listed}["toy"] == 3


def test_fetch_keeps_nothing_whose_sha256_differs_from_the_pinned_original(tmp_path, fetcher):
    refused = fetcher("fetch", "toy-changed")
    assert refused.returncode == 1
    assert "/changed.txt: sha256" in refused.stderr and "nothing kept" in refused.stderr
    assert not any((tmp_path / "data").rglob("*.*")), "neither the file nor its temp file is left"


def test_fetch_stops_a_download_that_grows_past_the_files_size(tmp_path, fetcher):
    stopped = fetcher("fetch", "toy-endless")
    assert stopped.returncode == 1 and "more than the 1000 bytes expected" in stopped.stderr
    assert not any((tmp_path / "data").rglob("*.*"))


def test_a_file_changed_by_hand_is_named_and_replaced_only_with_force(tmp_path, fetcher):
    assert fetcher("fetch", "toy").returncode == 0
    edited = tmp_path / "data" / "toy" / "table.csv"
    edited.write_bytes(b"text,label\nmine,mine\n")
    refused = fetcher("fetch", "toy")
    assert refused.returncode == 1 and f"{edited}: sha256" in refused.stderr and "--force" in refused.stderr
    assert edited.read_bytes() == b"text,label\nmine,mine\n", "a refused fetch changes nothing"
    assert fetcher("fetch", "toy", "--force").returncode == 0
    assert edited.read_bytes() == TABLE


def test_a_restrictive_license_must_be_accepted_before_anything_is_downloaded(tmp_path, server, fetcher):
    refused = fetcher("fetch", "toy-research")
    assert refused.returncode == 2 and "research only, no redistribution" in refused.stderr
    assert "--accept-license" in refused.stderr and server.requests == []
    accepted = fetcher("fetch", "toy-research", "--accept-license")
    assert accepted.returncode == 0, accepted.stderr
    assert (tmp_path / "data" / "toy-research" / "notes.txt").read_bytes() == NOTES


def test_unknown_names_and_files_outside_the_folder_are_refused(tmp_path, server, fetcher):
    unknown = fetcher("fetch", "toys")
    assert unknown.returncode == 2 and "no data set 'toys'; did you mean 'toy'?" in unknown.stderr
    escaping = fetcher("fetch", "toy-escape")
    assert escaping.returncode == 1 and "toy_datasets" in escaping.stderr and "'..'" in escaping.stderr
    assert not (tmp_path / "data" / "escaped.txt").exists() and server.requests == []


def test_offline_the_error_names_the_url_and_what_to_do(tmp_path):
    zeros = "0" * 64
    write(
        tmp_path / "plugins" / "toy_datasets.py",
        PLUGIN.format(notes=zeros, notes_size=1, table=zeros, table_size=1, readme=zeros),
    )
    env = {
        "PYTHONPATH": str(tmp_path / "plugins"),
        "HEIRLOOM_PLUGINS": "toy_datasets",
        "HEIRLOOM_DATA": str(tmp_path / "data"),
        "TOY_DATA_URL": "http://127.0.0.1:9",  # the discard port: nothing listens
    }
    offline = run_heirloom("data", "fetch", "toy", "--timeout", "5", env=env)
    assert offline.returncode == 1 and "http://127.0.0.1:9/notes.txt" in offline.stderr
    assert "copy the file in by hand" in offline.stderr and str(tmp_path / "data" / "toy") in offline.stderr
    assert not any((tmp_path / "data").rglob("*.*"))


def test_the_shipped_catalog_pins_the_bytes_of_the_shared_data(data_dir):
    """Every file of every shipped data set is in ../shared/data with the pinned sha256: the
    originals fetch downloads are the bytes every figure in the docs was measured on."""
    checked = run_heirloom("data", "fetch", *SHIPPED, env={"HEIRLOOM_DATA": str(data_dir)}, timeout=300)
    assert checked.returncode == 0, checked.stderr
    for name, count in SHIPPED.items():
        assert f"{name}: {count} files checked (sha256) in {data_dir / name}: {count} already there" in checked.stdout


def test_without_heirloom_data_a_fetched_set_is_where_profiles_read_data(tmp_path, heirloom_home, fetcher):
    """``${data}`` defaults to ``$HEIRLOOM_HOME/data``, where ``fetch`` puts data sets, so a
    shipped profile reads what ``heirloom data fetch`` brought with nothing else set."""
    env = {"PYTHONPATH": str(tmp_path / "plugins"), "HEIRLOOM_PLUGINS": "toy_datasets", "HEIRLOOM_DATA": ""}
    env["TOY_DATA_URL"] = fetcher.env["TOY_DATA_URL"]
    profile = write(tmp_path / "toy.toml", '[sources.s]\nuse = "csv"\ntrain = "${data}/toy/table.csv"\n')
    before = run_heirloom("data", "show", str(profile), "s", env=env)
    assert before.returncode == 2 and f"{heirloom_home / 'data'}; `heirloom data fetch toy`" in before.stderr
    assert run_heirloom("data", "fetch", "toy", env=env).returncode == 0
    assert (heirloom_home / "data" / "toy" / "table.csv").read_bytes() == TABLE
    shown = run_heirloom("data", "show", str(profile), "s", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert [json.loads(line)["label"] for line in shown.stdout.splitlines()] == ["greeting"]
