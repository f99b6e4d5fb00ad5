"""``heirloom data fetch``: public data sets put where profiles read them, every byte checked.

Downloads come from a real HTTP server on loopback (no test reaches the internet); the
shipped catalog is checked against the real data in ../shared/data, which is byte-identical
to the pinned originals.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import heirloom
from heirloom.datasets import fetch as fetching
from tests.helpers import HEIRLOOM, REPO, pythonpath, run_heirloom, write

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
SLOW = b"s" * (64 * 1024)  # sent in 4 KiB pieces, 0.1 s apart: 1.6 s in all


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


FILES = {
    "/notes.txt": NOTES,
    "/toy.zip": zipped({"toy/table.csv": TABLE, "toy/README": README}),
    "/changed.txt": b"not what the catalog pinned\n",
    "/zeros.zip": zipped({"zeros.bin": bytes(5000)}),
}


class Files(BaseHTTPRequestHandler):
    """Serves FILES; ``/endless`` never ends, ``/slow`` and ``/trickle`` take their time,
    ``/to-ftp`` redirects to an ftp:// URL."""

    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/to-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/notes.txt")
            self.end_headers()
            return
        if self.path in ("/endless", "/slow", "/trickle"):
            self.send_response(200)
            self.end_headers()
            piece, pause, count = {"/endless": (65536, 0, None), "/slow": (4096, 0.1, 16), "/trickle": (1, 0.5, 60)}[
                self.path
            ]
            try:
                while count is None or count > 0:
                    self.wfile.write(b"s" * piece)
                    self.wfile.flush()
                    time.sleep(pause)
                    count = None if count is None else count - 1
            except OSError:
                pass
            return
        body = FILES.get(self.path)
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
    httpd.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


#: A third party's plugin: registers the data sets of TOY_DATASETS (JSON manifests by name).
PLUGIN = """
import json
import os

import heirloom


@heirloom.hookimpl
def heirloom_register_datasets(register):
    for name, manifest in json.loads(os.environ["TOY_DATASETS"]).items():
        register(name, heirloom.Dataset.from_manifest(json.dumps(manifest)))
"""


def entry(path: str, url: str, data: bytes, **more: object) -> dict[str, object]:
    return {"path": path, "url": url, "sha256": sha(data), **more}


def manifests(url: str) -> dict[str, dict[str, object]]:
    def dataset(*files: dict[str, object], **more: object) -> dict[str, object]:
        return {"title": "Toy", "license": "CC0", "files": list(files), **more}

    return {
        "toy": dataset(
            entry("docs/notes.txt", f"{url}/notes.txt", NOTES, size=len(NOTES)),
            entry("table.csv", f"{url}/toy.zip", TABLE, member="toy/table.csv", size=len(TABLE)),
            entry("README", f"{url}/toy.zip", README, member="toy/README"),
        ),
        "toy-changed": dataset(entry("changed.txt", f"{url}/changed.txt", NOTES)),
        "toy-endless": dataset(entry("big.bin", f"{url}/endless", NOTES, size=1000)),
        "toy-research": dataset(
            entry("notes.txt", f"{url}/notes.txt", NOTES),
            license="research only, no redistribution",
            accept_license=True,
        ),
        "toy-escape": dataset(entry("../escaped.txt", f"{url}/notes.txt", NOTES)),
        "toy-partial": dataset(
            entry("gone.txt", f"{url}/gone.txt", NOTES),
            entry("notes.txt", f"{url}/notes.txt", NOTES),
            entry("ftp.txt", f"{url}/to-ftp", NOTES),
        ),
        "toy-slow": dataset(entry("slow.bin", f"{url}/slow", SLOW, size=len(SLOW))),
        "toy-trickle": dataset(entry("trickle.bin", f"{url}/trickle", NOTES)),
        "toy-sized-wrong": dataset(entry("notes.txt", f"{url}/notes.txt", NOTES, size=len(NOTES) + 1)),
        "toy-bomb": dataset(entry("zeros.bin", f"{url}/zeros.zip", bytes(5000), member="zeros.bin")),
        "toy-sloppy": dataset(
            entry("a.txt", f"{url}/notes.txt", NOTES),
            entry("./a.txt", f"{url}/notes.txt", NOTES),
            entry("a.txt/b.txt", f"{url}/notes.txt", NOTES),
            entry("nul\x00.txt", f"{url}/notes.txt", NOTES),
            entry("c.txt", f"{url}/no such file", NOTES, size=-1),
        ),
    }


def plugin_env(tmp_path: Path, url: str) -> dict[str, str]:
    write(tmp_path / "plugins" / "toy_datasets.py", PLUGIN)
    return {
        "PYTHONPATH": pythonpath(tmp_path / "plugins"),
        "HEIRLOOM_PLUGINS": "toy_datasets",
        "HEIRLOOM_DATA": str(tmp_path / "data"),
        "TOY_DATASETS": json.dumps(manifests(url)),
    }


@pytest.fixture
def fetcher(tmp_path, server):
    """Run ``heirloom data ...`` with the toy data sets registered, data root ``tmp_path/data``."""
    env = plugin_env(tmp_path, f"http://127.0.0.1:{server.server_port}")

    def run(*args: str):
        return run_heirloom("data", *args, env=env)

    run.env = env  # type: ignore[attr-defined]
    return run


def left(root: Path) -> list[str]:
    """The files under ``root`` but the fetch lock: what a fetch leaves behind."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != fetching.LOCK_NAME)


def test_hook_heirloom_register_datasets(tmp_path, server, fetcher):
    """A plugin's data set is fetched into the data root: each file checked, placed where
    profiles read it (``${data}/NAME/PATH``), an archive downloaded once for its members."""
    fetched = fetcher("fetch", "toy")
    assert fetched.returncode == 0, fetched.stderr
    root = tmp_path / "data" / "toy"
    assert (root / "docs" / "notes.txt").read_bytes() == NOTES
    assert (root / "table.csv").read_bytes() == TABLE and (root / "README").read_bytes() == README
    assert "toy: 3 files in" in fetched.stdout and "3 downloaded, 0 already there" in fetched.stdout
    assert sorted(server.requests) == ["/notes.txt", "/toy.zip"], "the archive is downloaded once for its members"
    assert left(root) == ["README", "docs/notes.txt", "table.csv"], "no temp files"

    again = fetcher("fetch", "toy")
    assert again.returncode == 0 and "3 already there" in again.stdout
    assert len(server.requests) == 2, "files already there are hashed, not downloaded again"
    listed = json.loads(fetcher("list", "--json").stdout)
    assert {row["name"]: row["present"] for row in listed}["toy"] == 3


def test_fetch_keeps_nothing_whose_sha256_differs_from_the_pinned_original(tmp_path, fetcher):
    refused = fetcher("fetch", "toy-changed")
    assert refused.returncode == 1
    assert "/changed.txt: sha256" in refused.stderr and "nothing kept" in refused.stderr
    assert left(tmp_path / "data") == [], "neither the file nor its temp file, nor an empty folder"
    assert not (tmp_path / "data" / "toy-changed").exists()


def test_fetch_stops_a_download_that_grows_past_the_files_size(tmp_path, fetcher):
    stopped = fetcher("fetch", "toy-endless")
    assert stopped.returncode == 1 and "the data set says 1000" in stopped.stderr
    assert left(tmp_path / "data") == []


def test_an_unsized_archive_member_is_refused_past_the_limit_before_a_byte_is_written(tmp_path, server, monkeypatch):
    """A zip bomb: 5,000 zeros deflate to a few bytes; with the limit at 4,096 bytes the
    member is refused from the archive's directory, before anything inflates."""
    monkeypatch.setattr(fetching, "MAX_UNSIZED_BYTES", 4096)
    bomb = heirloom.Dataset.from_manifest(json.dumps(manifests(f"http://127.0.0.1:{server.server_port}")["toy-bomb"]))
    done = fetching.fetch("toy-bomb", bomb, tmp_path / "data")
    assert done.downloaded == [] and len(done.failed) == 1 and "zeros.bin is 5000 bytes" in done.failed[0]
    assert left(tmp_path / "data") == []


def test_a_file_changed_by_hand_is_named_and_replaced_only_with_force(tmp_path, fetcher):
    assert fetcher("fetch", "toy").returncode == 0
    edited = tmp_path / "data" / "toy" / "table.csv"
    edited.write_bytes(b"text,label\nmine,mine\n")
    refused = fetcher("fetch", "toy")
    assert refused.returncode == 1 and f"{edited}: sha256" in refused.stderr and "--force" in refused.stderr
    assert edited.read_bytes() == b"text,label\nmine,mine\n", "a refused fetch changes nothing"
    assert fetcher("fetch", "toy", "--force").returncode == 0
    assert edited.read_bytes() == TABLE


def test_every_changed_file_and_whatever_is_in_a_files_place_is_named_and_the_others_fetched(tmp_path, fetcher):
    """Was: the first file with another sha256 stopped the fetch, naming only it."""
    assert fetcher("fetch", "toy").returncode == 0
    folder = tmp_path / "data" / "toy"
    (folder / "table.csv").write_bytes(b"mine\n")
    (folder / "README").write_bytes(b"mine too\n")
    (folder / "docs" / "notes.txt").unlink()
    os.mkfifo(folder / "docs" / "notes.txt")
    refused = fetcher("fetch", "toy")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    for name in ("table.csv", "README"):
        assert f"{folder / name}: sha256 " in refused.stderr
    assert f"{folder / 'docs' / 'notes.txt'} is a FIFO, not a regular file: remove it" in refused.stderr
    assert "3 files in" in refused.stdout and "0 already there, 3 missing" in refused.stdout  # the usual summary
    for name in ("table.csv", "README"):
        (folder / name).unlink()
    (folder / "docs" / "notes.txt").unlink()
    (folder / "table.csv").mkdir()
    (folder / "docs" / "notes.txt").symlink_to(tmp_path / "nowhere")
    refused = fetcher("fetch", "toy")
    assert refused.returncode == 1 and f"{folder / 'table.csv'} is a directory, not a file" in refused.stderr
    said = f"{folder / 'docs' / 'notes.txt'} is a symbolic link to {tmp_path / 'nowhere'}, which does not exist"
    assert said in refused.stderr and (folder / "README").read_bytes() == README  # fetched all the same
    assert "1 downloaded, 0 already there, 2 missing" in refused.stdout


def test_a_restrictive_license_must_be_accepted_before_anything_is_downloaded(tmp_path, server, fetcher):
    refused = fetcher("fetch", "toy", "toy-research")  # checked for every NAME before any download
    assert refused.returncode == 2 and "research only, no redistribution" in refused.stderr
    assert "--accept-license" in refused.stderr and server.requests == []
    accepted = fetcher("fetch", "toy-research", "--accept-license")
    assert accepted.returncode == 0, accepted.stderr
    assert (tmp_path / "data" / "toy-research" / "notes.txt").read_bytes() == NOTES


def test_bad_registrations_are_refused_naming_the_plugin_and_each_mistake(tmp_path, server, fetcher):
    unknown = fetcher("fetch", "toys")
    assert unknown.returncode == 2 and "error: no data set 'toys'; did you mean 'toy'?" in unknown.stderr
    escaping = fetcher("fetch", "toy-escape")
    assert escaping.returncode == 1 and "toy_datasets" in escaping.stderr and "'..'" in escaping.stderr
    sloppy = fetcher("fetch", "toy-sloppy")
    said = sloppy.stderr
    assert sloppy.returncode == 1 and "Traceback" not in said, said
    assert "./a.txt: the same file as 'a.txt'" in said and "a.txt/b.txt: a file cannot also be the folder" in said
    assert "without control characters" in said and "size must be a number of bytes" in said
    assert "url without spaces" in said
    assert not (tmp_path / "data" / "escaped.txt").exists() and server.requests == []


def test_one_file_that_fails_does_not_stop_the_others_and_the_rest_is_named(tmp_path, server, fetcher):
    """A 404 and a redirect to ftp:// fail; the file between them is still fetched, and the
    error says where each missing file comes from and goes, to copy it in by hand."""
    partial = fetcher("fetch", "toy-partial")
    assert partial.returncode == 1
    folder = tmp_path / "data" / "toy-partial"
    assert (folder / "notes.txt").read_bytes() == NOTES
    assert "/gone.txt: HTTP 404" in partial.stderr and "not http(s)" in partial.stderr
    assert "1 downloaded, 0 already there, 2 missing" in partial.stdout
    assert f"/gone.txt -> {folder / 'gone.txt'}" in partial.stderr and "2 files could not be fetched" in partial.stderr
    listed = {row["name"]: row for row in json.loads(fetcher("list", "--json").stdout)}["toy-partial"]
    assert [m["path"] for m in listed["missing"]] == [str(folder / "gone.txt"), str(folder / "ftp.txt")]


def test_a_trickling_server_and_a_wrong_size_are_stopped(tmp_path, fetcher):
    started = time.monotonic()
    trickled = fetcher("fetch", "toy-trickle", "--timeout", "2")
    assert trickled.returncode == 1 and "under 1 KiB/s" in trickled.stderr
    assert time.monotonic() - started < 20, "stopped after about --timeout, not after the 30 s the server takes"
    sized = fetcher("fetch", "toy-sized-wrong")
    assert sized.returncode == 1 and "21 bytes with the right sha256, but the data set says 22" in sized.stderr
    assert left(tmp_path / "data") == []


def background_fetch(fetcher, name: str) -> subprocess.Popen[str]:
    """``heirloom data fetch NAME`` running on its own (output in pipes)."""
    return subprocess.Popen(
        [*HEIRLOOM, "data", "fetch", name],
        env={**os.environ, **fetcher.env},
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigterm_leaves_no_temp_file_and_a_killed_fetch_is_swept(tmp_path, server, fetcher):
    """``timeout``, ``docker stop``, systemd send SIGTERM: the partial download goes. A
    SIGKILL leaves its temp file, which the next fetch into that folder removes."""
    folder = tmp_path / "data" / "toy-slow"
    for stop in (signal.SIGTERM, signal.SIGKILL):
        process = background_fetch(fetcher, "toy-slow")
        deadline = time.monotonic() + 30
        while not list(folder.glob(".slow.bin.*.part")) and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(stop)
        process.communicate(timeout=30)
        assert process.returncode == (128 + stop if stop == signal.SIGTERM else -stop)
        parts = list(folder.glob(".slow.bin.*.part"))
        assert parts == [] if stop == signal.SIGTERM else len(parts) == 1
    fetched = fetcher("fetch", "toy-slow")
    assert fetched.returncode == 0, fetched.stderr
    assert left(tmp_path / "data") == ["toy-slow/slow.bin"], "the killed fetch's temp file was swept"


def test_two_fetches_at_once_take_turns_and_download_once(tmp_path, server, fetcher):
    processes = [background_fetch(fetcher, "toy-slow") for _ in range(2)]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert sorted("1 downloaded" in out for out in outputs) == [False, True], outputs
    assert server.requests.count("/slow") == 1


def test_a_plugin_that_fails_to_load_is_named_where_its_data_sets_are_missing(tmp_path, fetcher):
    broken = {**fetcher.env, "TOY_DATASETS": "not json"}
    listed = run_heirloom("data", "list", env=broken)
    assert "plugin toy_datasets failed to load" in listed.stderr and "JSONDecodeError" in listed.stderr
    fetched = run_heirloom("data", "fetch", "toy", env=broken)
    assert fetched.returncode == 2 and "plugin toy_datasets failed to load" in fetched.stderr


def test_without_heirloom_data_a_fetched_set_is_where_profiles_read_data(tmp_path, heirloom_home, fetcher):
    """``${data}`` defaults to ``$HEIRLOOM_HOME/data``, where ``fetch`` puts data sets, so a
    shipped profile reads what ``heirloom data fetch`` brought with nothing else set."""
    env = {**fetcher.env, "HEIRLOOM_DATA": None}
    profile = write(tmp_path / "toy.toml", '[sources.s]\nuse = "csv"\ntrain = "${data}/toy/table.csv"\n')
    before = run_heirloom("data", "show", str(profile), "s", env=env)
    unset = "which does not exist: HEIRLOOM_DATA is not set; set it to the folder holding the data sets"  # h429 F4
    hint = f"{heirloom_home / 'data'}, {unset}; a public data set? `heirloom data fetch toy` (add --accept-license if"
    assert before.returncode == 2 and hint in " ".join(before.stderr.split()), before.stderr
    assert run_heirloom("data", "fetch", "toy", env=env).returncode == 0
    assert (heirloom_home / "data" / "toy" / "table.csv").read_bytes() == TABLE
    shown = run_heirloom("data", "show", str(profile), "s", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert [json.loads(line)["label"] for line in shown.stdout.splitlines()] == ["greeting"]


def test_offline_the_error_names_the_url_and_what_to_do(tmp_path):
    env = plugin_env(tmp_path, "http://127.0.0.1:9")  # the discard port: nothing listens
    offline = run_heirloom("data", "fetch", "toy", "--timeout", "5", env=env)
    assert offline.returncode == 1 and "http://127.0.0.1:9/notes.txt" in offline.stderr
    assert "copy the file in by hand" in offline.stderr
    assert f"-> {tmp_path / 'data' / 'toy' / 'docs' / 'notes.txt'}" in offline.stderr
    assert left(tmp_path / "data") == []


def test_the_shipped_catalog_pins_the_bytes_of_the_shared_data(data_dir):
    """Every file of every shipped data set is in ../shared/data with the pinned sha256: the
    originals fetch downloads are the bytes every figure in the docs was measured on."""
    checked = run_heirloom("data", "fetch", *SHIPPED, env={"HEIRLOOM_DATA": str(data_dir)}, timeout=300)
    assert checked.returncode == 0, checked.stderr
    for name, count in SHIPPED.items():
        line = f"{name}: {count} files in {data_dir / name}: {count} already there (sha256 checked)"
        assert line in checked.stdout, checked.stdout


def test_files_of_one_url_are_each_placed_and_a_bad_member_stops_no_other(tmp_path):
    """h420 F1, F2, F3: two files of one plain URL saved the first only and said both downloaded; a zip member
    failing its sha256 left the members after it unextracted, unsaid; a folder that cannot be written stopped the
    whole data set. Each file is placed or named, and the others go on."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "notes.txt").write_bytes(NOTES)
    (mirror / "toy.zip").write_bytes(zipped({"a.csv": TABLE, "b.txt": README, "c.txt": NOTES}))
    plain, archive = (mirror / "notes.txt").as_uri(), (mirror / "toy.zip").as_uri()
    files = [
        heirloom.DataFile("notes.txt", plain, sha(NOTES), len(NOTES)),
        heirloom.DataFile("copy/notes.txt", plain, sha(NOTES), len(NOTES)),
        heirloom.DataFile("a.csv", archive, "0" * 64, len(TABLE), member="a.csv"),  # its sha256 is wrong
        heirloom.DataFile("b.txt", archive, sha(README), len(README), member="b.txt"),
        heirloom.DataFile("c.txt", archive, sha(NOTES), len(NOTES), member="c.txt"),
    ]
    done = fetching.fetch("mirror", heirloom.Dataset("a mirror", "CC0", files), tmp_path / "data")
    folder = tmp_path / "data" / "mirror"
    assert sorted(done.downloaded) == ["b.txt", "c.txt", "copy/notes.txt", "notes.txt"], done
    assert (folder / "copy" / "notes.txt").read_bytes() == NOTES and (folder / "c.txt").read_bytes() == NOTES
    assert len(done.failed) == 1 and "(a.csv): sha256" in done.failed[0] and [f.path for f in done.missing] == ["a.csv"]
    (folder / "copy" / "notes.txt").unlink()
    (folder / "copy").rmdir()
    (folder / "copy").symlink_to(tmp_path / "nowhere")  # a folder no file can go in: that file named, the rest go on
    again = fetching.fetch("mirror", heirloom.Dataset("a mirror", "CC0", files), tmp_path / "data")
    said = f"{folder / 'copy'} links to {tmp_path / 'nowhere'}, which does not exist: remove it, then fetch again"
    assert said in again.failed, again.failed
    assert "copy/notes.txt" not in again.downloaded and "a.csv" in [f.path for f in again.missing]
