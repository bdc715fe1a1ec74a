"""Fetching a benchmark: downloaded from a local HTTP server (Range support), verified, extracted
safely, checked; and the source table every recorded checksum lives in."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from replicas import make_caltech101, make_flowers102, make_holidays, make_ukbench

from workers.benchmarks import BENCHMARKS
from workers.datasets import installed
from workers.datasets import download as download_module
from workers.datasets.archives import ArchiveBroken, ArchiveRefused, extract
from workers.datasets.base import DatasetError
from workers.datasets.download import DEFAULT_MAX_BYTES, DownloadTooLarge, Progress, download, origin_file
from workers.datasets.fetch import ChecksumMismatch, fetch
from workers.datasets.sources import DIGEST_LENGTHS, SOURCES_FILE, load_sources, parse_mirrors, parse_table


class ArchiveServer:
    """Serves `files` over HTTP with Range; records each request's Range (and If-Range) header; can
    drop a connection after N bytes (once per file), ignore Range altogether, send validators
    (ETag / Last-Modified, honouring If-Range unless told not to), or leave Content-Length out."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests, self.drop_after, self.ignore_range = files, [], {}, False
        self.validators: dict[str, dict[str, str]] = {}
        self.if_ranges, self.ignore_if_range, self.no_length, self.sent = [], False, set(), {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                server.if_ranges.append(self.headers.get("If-Range"))
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                validators = server.validators.get(name, {})
                if_range = self.headers.get("If-Range")
                changed = bool(if_range) and if_range not in validators.values() and not server.ignore_if_range
                start = 0
                asked = re.match(r"^bytes=(\d+)-$", self.headers.get("Range") or "")
                if asked and not server.ignore_range and not changed:
                    start = int(asked.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                for header, value in validators.items():
                    self.send_header(header, value)
                if name not in server.no_length:
                    self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.drop_after.pop(name, None)
                data = memoryview(body[start:] if cut is None else body[start:start + cut])
                server.sent[name] = 0
                try:
                    for at in range(0, len(data), 1 << 16):
                        self.wfile.write(data[at:at + (1 << 16)])
                        server.sent[name] += len(data[at:at + (1 << 16)])
                except (BrokenPipeError, ConnectionResetError):
                    pass          # the client hung up (a download it refused)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(files: dict[str, bytes]) -> ArchiveServer:
        servers.append(ArchiveServer(files))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _tgz(members: dict[str, bytes | Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            if isinstance(content, Path):
                tar.add(content, arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def flowers_files(tmp_path: Path) -> tuple[dict[str, bytes], int]:
    """The three files of the official Flowers102 page, built from a replica: 102flowers.tgz (jpg/),
    imagelabels.mat and setid.mat."""
    replica = make_flowers102(tmp_path / "replica")
    files = {"102flowers.tgz": _tgz({"jpg": replica.root / "jpg"})}
    for name in ("imagelabels.mat", "setid.mat"):
        files[name] = (replica.root / name).read_bytes()
    return files, replica.images


def source_table(path: Path, server: ArchiveServer, benchmark: str, files: dict[str, bytes],
                 wrong: str | None = None, **extra) -> Path:
    """A lab's source table: each file at the server, with the sha256 of what it serves (or a wrong one)."""
    archives = []
    for name, body in files.items():
        digest = hashlib.sha256(body).hexdigest()
        archives.append({"name": name, "url": f"{server.url}/{name}", "size": len(body),
                         "sha256": "0" * 64 if name == wrong else digest,
                         "checksum_source": "computed by the test from the replica", **extra.get(name, {})})
    path.write_text(json.dumps({"benchmarks": {benchmark: {"page": server.url, "archives": archives}}}))
    return path


def _part_from(part: Path, url: str, data: bytes) -> None:
    """A part file as a dropped run from `url` leaves it: its bytes and the record of where they came from."""
    part.write_bytes(data)
    origin_file(part).write_text(json.dumps({"url": url}))


def _leftovers(root: Path) -> list[str]:
    return sorted(path.name for path in root.iterdir()) if root.exists() else []


def test_good_fetch_extracts_checks_and_status_shows_it_runnable(tmp_path, serve, run_cli):
    files, images = flowers_files(tmp_path)
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    root = tmp_path / "data" / "flowers102"

    fetched = run_cli("datasets", "fetch", "flowers102", root, "--sources", table)

    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout.splitlines()[-1])["images"] == images
    assert "102flowers.tgz" in fetched.stdout and "sha256 verified" in fetched.stdout
    assert sorted(_leftovers(root)) == [installed.RECORD, "imagelabels.mat", "jpg", "setid.mat"]
    assert re.search(r"102flowers\.tgz: [\d.]+ KiB of [\d.]+ KiB \(100%\), [\d.]+ \S+/s", fetched.stderr)   # non-tty
    record = installed.read_record(root)["benchmarks"]["flowers102"]
    assert record["verified"] and record["archives"][0]["sha256"] == hashlib.sha256(files["102flowers.tgz"]).hexdigest()

    status = run_cli("datasets", "status", "--data-roots", f"flowers102={root}", "--json")
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert rows["flowers102"]["runnable"] is True and rows["flowers102"]["images"] == images
    assert rows["flowers102"]["archives"] == "verified"
    assert rows["voc2007"]["runnable"] is False
    assert rows["voc2007"]["fetch_command"] == f"python -m workers datasets fetch voc2007 {root.parent}/voc2007"
    assert rows["voc2007"]["roots_line"] == f"SHELFMARK_DATA_ROOTS=flowers102={root},voc2007={root.parent}/voc2007"
    text = run_cli("datasets", "status", "--data-roots", f"flowers102={root}").stdout
    assert re.search(rf"^flowers102 +yes +{images} .*fetched and verified", text, re.M)
    assert re.search(r"^voc2007 +no ", text, re.M) and "To add the others" in text
    assert f"python -m workers datasets fetch ukbench {root.parent}/ukbench --mirror ukbench.zip=URL" in text
    said = []
    fetch("flowers102", root, sources_file=table, say=said.append)
    assert "already in place" in said[-1] and len(server.requests) == 3


def test_a_copy_broken_since_its_fetch_is_reported_broken_until_fetched_again(tmp_path, serve):
    files, _ = flowers_files(tmp_path)
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    root = tmp_path / "flowers102"
    fetch("flowers102", root, sources_file=table, say=lambda line: None)

    def flowers(check: bool) -> installed.BenchmarkStatus:
        rows = installed.benchmark_status({"flowers102": root}, check=check)
        return next(row for row in rows if row.name == "flowers102")

    assert flowers(check=False).state == "ready"
    (root / "imagelabels.mat").unlink()
    assert flowers(check=False).state == "ready"          # the record is not a fresh read ...
    assert flowers(check=True).state == "broken"          # ... --check is, and what it found is kept:
    later = flowers(check=False)
    assert later.state == "broken" and later.runnable is False and "imagelabels.mat" in later.detail

    fetch("flowers102", root, sources_file=table, say=lambda line: None)

    assert flowers(check=False).state == "ready"


def test_wrong_checksum_is_refused_and_nothing_is_extracted(tmp_path, serve):
    files, _ = flowers_files(tmp_path)
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "flowers102", files, wrong="102flowers.tgz")
    root = tmp_path / "flowers102"

    with pytest.raises(ChecksumMismatch, match="checksum mismatch.*deleted and nothing was extracted"):
        fetch("flowers102", root, sources_file=table, say=lambda line: None, retries=0)

    assert _leftovers(root) == []     # no jpg/, no .part, no kept download, no staging folder


def test_dropped_connection_is_resumed_with_range_on_the_next_run(tmp_path, serve):
    files, images = flowers_files(tmp_path)
    server = serve(files)
    half = len(files["102flowers.tgz"]) // 2
    server.drop_after["102flowers.tgz"] = half
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    root = tmp_path / "flowers102"
    said = []

    with pytest.raises(DatasetError, match="connection dropped.*next run resumes"):
        fetch("flowers102", root, sources_file=table, say=said.append, retries=0)
    part = root / installed.DOWNLOADS / "102flowers.tgz.part"
    assert part.stat().st_size == half and not (root / "jpg").exists()

    summary = fetch("flowers102", root, sources_file=table, say=said.append, retries=0)

    tgz_requests = [asked for name, asked in server.requests if name == "102flowers.tgz"]
    assert tgz_requests == [None, f"bytes={half}-"]
    assert summary["images"] == images and not part.exists()
    assert any("resuming" in line for line in said)


def test_a_server_that_ignores_range_is_downloaded_again(tmp_path, serve):
    files, images = flowers_files(tmp_path)
    server = serve(files)
    server.drop_after["102flowers.tgz"] = 100
    server.ignore_range = True
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    said = []
    with pytest.raises(DatasetError, match="connection dropped"):
        fetch("flowers102", tmp_path / "flowers102", sources_file=table, say=said.append, retries=0)

    summary = fetch("flowers102", tmp_path / "flowers102", sources_file=table, say=said.append, retries=0)

    assert summary["images"] == images
    assert any("sent the whole file, not the rest (it ignores Range" in line for line in said)


def test_one_archive_dropped_halfway_and_one_corrupt(tmp_path, serve, monkeypatch):
    """The fetch of part 9: the image archive's connection drops halfway (resumed with Range in the
    same run), setid.mat is served corrupt (refused, nothing extracted); once the server is fixed, the
    next run keeps the verified archive and downloads only what was refused."""
    files, images = flowers_files(tmp_path)
    good_setid = files["setid.mat"]
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    server.files["setid.mat"] = good_setid[:-7] + b"corrupt"
    half = len(files["102flowers.tgz"]) // 2
    server.drop_after["102flowers.tgz"] = half
    root = tmp_path / "flowers102"
    said = []
    monkeypatch.setattr("workers.datasets.fetch.time.sleep", lambda seconds: None)     # the retry's back-off

    with pytest.raises(ChecksumMismatch, match=r"setid\.mat: checksum mismatch"):
        fetch("flowers102", root, sources_file=table, say=said.append, retries=1)

    assert [asked for name, asked in server.requests if name == "102flowers.tgz"] == [None, f"bytes={half}-"]
    assert any("connection dropped" in line and "retrying" in line for line in said)
    assert _leftovers(root) == [installed.DOWNLOADS]          # nothing extracted, no staging folder
    kept = sorted(path.name for path in (root / installed.DOWNLOADS).iterdir())
    assert kept == ["102flowers.tgz", "imagelabels.mat"]      # the verified ones; the corrupt one deleted

    server.files["setid.mat"] = good_setid
    summary = fetch("flowers102", root, sources_file=table, say=said.append, retries=0)

    assert summary["images"] == images
    assert len([name for name, _ in server.requests if name == "102flowers.tgz"]) == 2    # not downloaded again
    assert any("using the download kept from an earlier run" in line for line in said)
    assert sorted(_leftovers(root)) == [installed.RECORD, "imagelabels.mat", "jpg", "setid.mat"]


def test_a_server_ignoring_range_gets_a_clean_restart_not_appended_bytes(tmp_path, serve):
    body = bytes(range(256)) * 64
    server = serve({"a.bin": body})
    server.ignore_range = True
    part = tmp_path / "a.bin.part"
    _part_from(part, f"{server.url}/a.bin", body[:1000])       # a dropped run's prefix

    done = download(f"{server.url}/a.bin", part, label="a.bin", stream=io.StringIO())

    assert server.requests == [("a.bin", "bytes=1000-")]      # it asked to resume; the server sent it all (200)
    assert done.restarted and done.resumed_from == 0
    assert part.read_bytes() == body and done.digests["sha256"] == hashlib.sha256(body).hexdigest()


def test_the_progress_line_shows_bytes_rate_and_eta(monkeypatch):
    clock = iter([100.0, 102.0, 102.0, 104.0, 104.0])
    monkeypatch.setattr(download_module, "time", type("Clock", (), {"monotonic": staticmethod(lambda: next(clock))}))
    stream = io.StringIO()
    progress = Progress("flowers102/102flowers.tgz", 4 * 2**20, stream=stream)
    progress.update(2**20)          # 25% after 2 s: 512 KiB/s, 6 s to go
    progress.update(3 * 2**20)
    progress.close()

    lines = stream.getvalue().splitlines()
    assert lines == ["flowers102/102flowers.tgz: 1.0 MiB of 4.0 MiB (25%), 512.0 KiB/s, ETA 6s",
                     "flowers102/102flowers.tgz: 4.0 MiB of 4.0 MiB (100%), 1.0 MiB/s"]   # the last not twice


def test_on_a_terminal_the_progress_bar_is_tqdms():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress("flowers102/102flowers.tgz", 4 * 2**20, stream=stream)
    progress.update(2**20)
    progress.close()

    bar = stream.getvalue()
    assert "flowers102/102flowers.tgz" in bar and "25%" in bar and "B/s" in bar and "<" in bar   # elapsed<ETA


def test_a_tar_member_climbing_out_with_dotdot_is_refused(tmp_path, serve):
    files = {"jpg1.tar.gz": _tgz({"jpg/100000.jpg": b"x", "../escape": b"owned"})}
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "holidays", files)
    root = tmp_path / "data" / "holidays"

    with pytest.raises(ArchiveRefused, match=r"\.\./escape.*climbs out"):
        fetch("holidays", root, sources_file=table, say=lambda line: None)

    assert not (root / "jpg").exists() and not (tmp_path / "data" / "escape").exists()
    assert not (root / ".fetch-holidays.tmp").exists()


def test_a_truncated_archive_without_a_checksum_leaves_nothing_half_extracted(tmp_path, serve):
    replica = make_holidays(tmp_path / "replica")
    whole = _tgz({"jpg": replica.root / "jpg"})
    files = {"jpg1.tar.gz": whole[: len(whole) * 2 // 3]}
    server = serve(files)
    table = tmp_path / "sources.json"
    table.write_text(json.dumps({"benchmarks": {"holidays": {"archives": [
        {"name": "jpg1.tar.gz", "url": f"{server.url}/jpg1.tar.gz", "checksum": None, "note": "none published"}]}}}))
    root = tmp_path / "holidays"

    with pytest.raises(ArchiveBroken, match="broken or truncated"):
        fetch("holidays", root, sources_file=table, say=lambda line: None)

    assert not (root / "jpg").exists() and not (root / ".fetch-holidays.tmp").exists()


def test_without_a_recorded_checksum_fetch_says_so_and_records_the_sha256(tmp_path, serve):
    replica = make_holidays(tmp_path / "replica")
    files = {"jpg1.tar.gz": _tgz({"jpg": replica.root / "jpg"})}
    server = serve(files)
    table = tmp_path / "sources.json"
    table.write_text(json.dumps({"benchmarks": {"holidays": {"archives": [
        {"name": "jpg1.tar.gz", "url": f"{server.url}/jpg1.tar.gz", "checksum": None, "note": "none published"}]}}}))
    said = []

    summary = fetch("holidays", tmp_path / "holidays", sources_file=table, say=said.append)

    sha = hashlib.sha256(files["jpg1.tar.gz"]).hexdigest()
    assert summary["images"] == replica.images
    assert any("not verified against a recorded checksum" in line and sha in line for line in said)
    record = installed.read_record(tmp_path / "holidays")["benchmarks"]["holidays"]
    assert record["verified"] is False and record["archives"][0]["sha256"] == sha


def test_caltech101_zip_is_opened_for_its_inner_archive(tmp_path, serve):
    replica = make_caltech101(tmp_path / "replica", n_per_class=(31, 32, 33))   # more than the 30 it trains on
    inner = _tgz({"101_ObjectCategories": replica.root / "101_ObjectCategories"})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("caltech-101/101_ObjectCategories.tar.gz", inner)
        archive.writestr("caltech-101/Annotations.tar", b"not needed")
    files = {"caltech-101.zip": buffer.getvalue()}
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "caltech101", files, **{"caltech-101.zip": {"inner": {
        "member": "caltech-101/101_ObjectCategories.tar.gz", "sha256": hashlib.sha256(inner).hexdigest(),
        "checksum_source": "the test"}}})

    summary = fetch("caltech101", tmp_path / "caltech101", sources_file=table, say=lambda line: None)

    assert summary["classes"] == 3
    assert _leftovers(tmp_path / "caltech101") == [installed.RECORD, "101_ObjectCategories"]


def test_an_inner_archive_that_is_not_the_recorded_one_is_refused_without_a_pointless_retry(tmp_path, serve):
    replica = make_caltech101(tmp_path / "replica", n_per_class=(31, 32, 33))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("caltech-101/101_ObjectCategories.tar.gz",
                         _tgz({"101_ObjectCategories": replica.root / "101_ObjectCategories"}))
    files = {"caltech-101.zip": buffer.getvalue()}
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "caltech101", files, **{"caltech-101.zip": {"inner": {
        "member": "caltech-101/101_ObjectCategories.tar.gz", "sha256": "1" * 64, "checksum_source": "the test"}}})
    root = tmp_path / "caltech101"

    with pytest.raises(ChecksumMismatch, match=r"arrived whole and verified \(sha256\), but .*101_ObjectCategories"
                                               r"\.tar\.gz inside it is not the file recorded \(checksum mismatch"):
        fetch("caltech101", root, sources_file=table, say=lambda line: None)

    assert _leftovers(root) == [installed.DOWNLOADS]      # the verified zip kept, nothing extracted


def test_an_unavailable_host_says_what_to_do_and_a_mirror_fetches_it(tmp_path):
    with pytest.raises(DatasetError, match=r"ukbench: the official host .* is gone.*--mirror ukbench\.zip=URL"):
        fetch("ukbench", tmp_path / "ukbench", say=lambda line: None)
    assert not (tmp_path / "ukbench").exists()

    replica = make_ukbench(tmp_path / "replica")
    copy = tmp_path / "ukbench.zip"
    with zipfile.ZipFile(copy, "w") as archive:
        for image in sorted((replica.root / "full").iterdir()):
            archive.write(image, f"full/{image.name}")
    said = []
    summary = fetch("ukbench", tmp_path / "ukbench", mirrors={"ukbench.zip": copy.as_uri()}, say=said.append)

    assert summary["images"] == replica.images
    assert any("not verified against a recorded checksum" in line for line in said)


def test_a_dead_official_url_falls_back_to_the_recorded_mirror_and_mirror_flags_name_archives(tmp_path, serve):
    files, images = flowers_files(tmp_path)
    server = serve({f"mirror/{name}": body for name, body in files.items()})
    table = source_table(tmp_path / "sources.json", server, "flowers102", files,
                         **{name: {"mirrors": [f"{server.url}/mirror/{name}"]} for name in files})
    said = []

    summary = fetch("flowers102", tmp_path / "flowers102", sources_file=table, say=said.append)

    assert summary["images"] == images
    assert [name for name, _ in server.requests] == [part for name in files for part in (name, f"mirror/{name}")]
    with pytest.raises(DatasetError, match=r"flowers102 has no archive 'flowers.tgz' \(its archives: 102flowers\.tgz"):
        fetch("flowers102", tmp_path / "other", sources_file=table, mirrors={"flowers.tgz": "http://h/x"})
    with pytest.raises(DatasetError, match="is not ARCHIVE=URL"):
        parse_mirrors(["102flowers.tgz"])


def test_a_part_file_already_whole_is_finished_without_downloading_again(tmp_path, serve):
    files, images = flowers_files(tmp_path)
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    root = tmp_path / "flowers102"
    part = root / installed.DOWNLOADS / "102flowers.tgz.part"
    part.parent.mkdir(parents=True)
    _part_from(part, f"{server.url}/102flowers.tgz", files["102flowers.tgz"])   # stopped before the rename

    summary = fetch("flowers102", root, sources_file=table, say=lambda line: None)

    assert summary["images"] == images
    assert ("102flowers.tgz", f"bytes={len(files['102flowers.tgz'])}-") in server.requests


# ---- downloads: bounded, and resumed only from where the bytes came from ---------------------------

MiB = 2**20


def test_a_server_sending_more_than_the_recorded_size_is_cut_off_and_nothing_is_kept(tmp_path, serve):
    server = serve({"big.bin": bytes(64 * MiB)})
    server.no_length.add("big.bin")          # nothing announced: only counting the bytes catches it
    part = tmp_path / "big.bin.part"

    with pytest.raises(DownloadTooLarge, match=r"sent more than the 1048576 bytes recorded.*nothing of it was kept"):
        download(f"{server.url}/big.bin", part, label="big.bin", expected_size=MiB, stream=io.StringIO())

    assert not part.exists() and not origin_file(part).exists()
    assert server.sent["big.bin"] < 32 * MiB        # it stopped reading at the bound, not at the end


@pytest.mark.parametrize("recorded, bound, length, resume, why", [
    (MiB, DEFAULT_MAX_BYTES, True, False, r"says the file is 2097152 bytes where 1048576 are recorded"),
    (MiB, DEFAULT_MAX_BYTES, True, True, r"says the file is 2097152 bytes where 1048576 are recorded"),  # 206
    (None, MiB, True, False, r"says the file is 2\.0 MiB, past the 1\.0 MiB bound .*--max-download-gb"),
    (None, MiB, False, False, r"sent more, past the 1\.0 MiB bound .*--max-download-gb"),
])
def test_a_download_larger_than_it_can_be_is_refused(tmp_path, serve, recorded, bound, length, resume, why):
    server = serve({"big.bin": bytes(2 * MiB)})
    if not length:
        server.no_length.add("big.bin")
    part = tmp_path / "big.bin.part"
    if resume:
        _part_from(part, f"{server.url}/big.bin", bytes(1000))

    with pytest.raises(DownloadTooLarge, match=why):
        download(f"{server.url}/big.bin", part, label="big.bin", expected_size=recorded, max_bytes=bound,
                 stream=io.StringIO())

    assert not part.exists() and not origin_file(part).exists()
    assert server.requests == [("big.bin", "bytes=1000-" if resume else None)]


def test_an_oversized_mirror_is_refused_and_the_next_one_serves_the_file(tmp_path, serve, monkeypatch):
    files, images = flowers_files(tmp_path)
    server = serve({**files, "bad/102flowers.tgz": files["102flowers.tgz"] + bytes(MiB)})
    server.no_length.add("bad/102flowers.tgz")
    table = source_table(tmp_path / "sources.json", server, "flowers102", files,
                         **{"102flowers.tgz": {"url": f"{server.url}/bad/102flowers.tgz",
                                               "mirrors": [f"{server.url}/102flowers.tgz"]}})
    said = []

    summary = fetch("flowers102", tmp_path / "flowers102", sources_file=table, say=said.append)

    assert summary["images"] == images
    assert any("bad/102flowers.tgz sent more than the" in line for line in said)
    assert [name for name, _ in server.requests][:2] == ["bad/102flowers.tgz", "102flowers.tgz"]


def test_max_download_gb_is_the_bound_fetch_gets(monkeypatch):
    from workers import cli, cli_datasets

    got = {}
    monkeypatch.setattr("workers.datasets.fetch.fetch", lambda *args, **options: got.update(options) or {})
    parser = cli.build_parser()
    for argv, bound in ([], DEFAULT_MAX_BYTES), (["--max-download-gb", "0.5"], MiB * 512):
        args = parser.parse_args(["datasets", "fetch", "flowers102", "/tmp/x", *argv])
        args.func(args)
        assert got["max_download_bytes"] == bound
    assert cli_datasets.DEFAULT_MAX_GB * 2**30 == DEFAULT_MAX_BYTES
    with pytest.raises(SystemExit):
        parser.parse_args(["datasets", "fetch", "flowers102", "/tmp/x", "--max-download-gb", "0"])


def test_a_part_file_from_another_url_is_started_again_not_resumed(tmp_path, serve):
    files, images = flowers_files(tmp_path)
    server = serve({**files, "mirror/102flowers.tgz": files["102flowers.tgz"]})
    half = len(files["102flowers.tgz"]) // 2
    server.drop_after["102flowers.tgz"] = half
    table = source_table(tmp_path / "sources.json", server, "flowers102", files,
                         **{"102flowers.tgz": {"mirrors": [f"{server.url}/mirror/102flowers.tgz"]}})
    root = tmp_path / "flowers102"
    said = []
    with pytest.raises(DatasetError, match="connection dropped"):
        fetch("flowers102", root, sources_file=table, say=said.append, retries=0)
    del server.files["102flowers.tgz"]          # the official host is gone: the mirror serves it

    summary = fetch("flowers102", root, sources_file=table, say=said.append, retries=0)

    assert summary["images"] == images
    tgz = [(name, asked) for name, asked in server.requests if name.endswith("102flowers.tgz")]
    assert tgz == [("102flowers.tgz", None), ("102flowers.tgz", f"bytes={half}-"), ("mirror/102flowers.tgz", None)]
    assert any("came from another URL" in line and "starting again" in line for line in said)
    assert _leftovers(root / installed.DOWNLOADS) == []     # no part file, no record of one


@pytest.mark.parametrize("validator, ignores_if_range", [("ETag", False), ("ETag", True), ("Last-Modified", False)])
def test_a_file_changed_since_its_part_was_downloaded_is_started_again(tmp_path, serve, validator, ignores_if_range):
    old, new = bytes(range(256)) * 64, bytes(reversed(range(256))) * 64
    first, second = ('"v1"', '"v2"') if validator == "ETag" else ("Mon, 01 Jan 2024 00:00:00 GMT",
                                                                  "Tue, 02 Jan 2024 00:00:00 GMT")
    server = serve({"a.bin": old})
    server.validators["a.bin"] = {validator: first}
    server.drop_after["a.bin"] = 1000
    part = tmp_path / "a.bin.part"
    with pytest.raises(DatasetError, match="connection dropped"):
        download(f"{server.url}/a.bin", part, label="a.bin", stream=io.StringIO())
    server.files["a.bin"], server.validators["a.bin"] = new, {validator: second}      # the file changed
    server.ignore_if_range = ignores_if_range     # then it answers 206, but with the new ETag

    done = download(f"{server.url}/a.bin", part, label="a.bin", stream=io.StringIO())

    assert server.requests[1] == ("a.bin", "bytes=1000-") and server.if_ranges[1] == first
    assert done.restarted and done.resumed_from == 0
    assert part.read_bytes() == new and done.digests["sha256"] == hashlib.sha256(new).hexdigest()
    assert json.loads(origin_file(part).read_text())[validator.lower().replace("-", "_")] == second


# ---- moving the extraction into ROOT ---------------------------------------------------------------

def _tree(root: Path) -> dict[str, object]:
    """What ROOT holds, links not followed: each path's kind and content (or link target); not the downloads."""
    tree = {}
    for folder, names, files in os.walk(root):
        for name in names + files:
            path = Path(folder, name)
            shown = path.relative_to(root).as_posix()
            if shown.split("/")[0] == installed.DOWNLOADS:
                continue
            tree[shown] = (("link", os.readlink(path)) if path.is_symlink() else ("folder",) if path.is_dir()
                           else ("file", path.read_bytes()))
    return tree


def _clash_setup(case: str, root: Path, outside: Path) -> list[str]:
    """Put one of the clashes in ROOT (and beside it, a link's target); returns the paths the refusal names."""
    root.mkdir(parents=True)
    (outside / "jpg").mkdir(parents=True)
    (outside / "jpg" / "mine.jpg").write_bytes(b"the user's")
    (outside / "setid.mat").write_bytes(b"the user's")
    (root / "notes.txt").write_text("the user's")
    named = []
    if case in ("folder where a file goes", "several"):
        (root / "imagelabels.mat").mkdir()
        (root / "imagelabels.mat" / "labels-v2.txt").write_text("the user's")
        named.append("imagelabels.mat is a folder in ROOT")
    if case in ("link to a folder", "several"):
        (root / "jpg").symlink_to(outside / "jpg")
        named.append("jpg is a symbolic link")
    if case == "link to a file":
        (root / "setid.mat").symlink_to(outside / "setid.mat")
        named.append("setid.mat is a symbolic link")
    if case in ("file that differs", "several"):
        (root / "setid.mat").write_bytes(b"the user's own split")
        named.append("setid.mat in ROOT differs")
    return named


@pytest.mark.parametrize("case, force", [(case, force) for case in ("folder where a file goes", "link to a folder",
                                                                    "link to a file", "file that differs", "several")
                                         for force in (False, True) if not (force and case == "file that differs")])
def test_a_clash_in_root_refuses_the_move_and_changes_nothing(tmp_path, serve, case, force):
    """A file that differs is replaced with --force (the next test); the other clashes are refused even then."""
    files, _ = flowers_files(tmp_path)
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    root, outside = tmp_path / "flowers102", tmp_path / "elsewhere"
    named = _clash_setup(case, root, outside)
    if force and case == "several":
        named.remove("setid.mat in ROOT differs")
    before, beside = _tree(root), _tree(outside)

    with pytest.raises(DatasetError, match="clash") as refused:
        fetch("flowers102", root, sources_file=table, force=force, say=lambda line: None)

    assert all(clash in str(refused.value) for clash in named), str(refused.value)
    assert "Nothing was moved" in str(refused.value)
    assert _tree(root) == before and _tree(outside) == beside
    assert sorted((root / installed.DOWNLOADS).iterdir()) != []      # the verified downloads wait for the rerun


def test_an_archive_member_named_like_fetchs_own_files_is_refused(tmp_path, serve):
    files, _ = flowers_files(tmp_path)
    replica = make_flowers102(tmp_path / "again")
    files["102flowers.tgz"] = _tgz({"jpg": replica.root / "jpg", installed.RECORD: b'{"benchmarks": {}}'})
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    root = tmp_path / "flowers102"

    with pytest.raises(DatasetError, match=rf"{re.escape(installed.RECORD)} is a name fetch keeps for itself"):
        fetch("flowers102", root, sources_file=table, say=lambda line: None)

    assert _leftovers(root) == [installed.DOWNLOADS]


def test_force_replaces_only_the_files_the_archives_provide(tmp_path, serve):
    files, images = flowers_files(tmp_path)
    server = serve(files)
    table = source_table(tmp_path / "sources.json", server, "flowers102", files)
    root = tmp_path / "flowers102"
    (root / "jpg").mkdir(parents=True)
    (root / "jpg" / "mine.txt").write_text("the user's")
    (root / "notes.txt").write_text("the user's")
    (root / "setid.mat").write_bytes(b"the user's own split")
    (root / "imagelabels.mat").write_bytes(files["imagelabels.mat"])     # the same bytes: left as it is
    said = []

    summary = fetch("flowers102", root, sources_file=table, force=True, say=said.append)

    assert summary["images"] == images
    assert (root / "setid.mat").read_bytes() == files["setid.mat"]
    assert (root / "jpg" / "mine.txt").read_text() == "the user's" and (root / "notes.txt").read_text() == "the user's"
    assert any("1 file(s) that differed replaced, --force" in line for line in said)


# ---- archives as untrusted input ------------------------------------------------------------------

def _zip_with(tmp_path: Path, name: str, mode: int | None = None) -> Path:
    path = tmp_path / "hostile.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        archive.writestr(info, b"target")
    return path


@pytest.mark.parametrize("name, mode, why", [
    ("/etc/passwd", None, "absolute path"),
    ("jpg/../../escape", None, "climbs out"),
    ("jpg/link", 0o120777, "is a link"),
])
def test_hostile_zip_members_are_refused(tmp_path, name, mode, why):
    with pytest.raises(ArchiveRefused, match=why):
        extract(_zip_with(tmp_path, name, mode), tmp_path / "out", kind="zip", label="t", max_bytes=2**20)


def test_tar_links_and_devices_are_refused(tmp_path):
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE):
        path = tmp_path / f"hostile-{kind!r}.tar"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("jpg/x.jpg")
            info.type, info.linkname = kind, "/etc/passwd"
            tar.addfile(info)
        with pytest.raises(ArchiveRefused, match="link|device"):
            extract(path, tmp_path / "out", kind="tar", label="t", max_bytes=2**20)


def test_a_truncated_zip_is_broken(tmp_path):
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("full/ukbench00000.jpg", bytes(range(256)) * 400)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ArchiveBroken, match="broken or truncated"):
        extract(cut, tmp_path / "out", kind="zip", label="t", max_bytes=2**20)


def test_an_archive_of_too_many_members_is_refused(tmp_path):
    path = tmp_path / "many.tar"
    with tarfile.open(path, "w") as tar:
        for n in range(5):
            tar.addfile(tarfile.TarInfo(f"jpg/{n}.jpg"), io.BytesIO(b""))
    with pytest.raises(ArchiveRefused, match="more than 3 members"):
        extract(path, tmp_path / "out", kind="tar", label="t", max_bytes=2**20, max_members=3)


def test_an_archive_unpacking_past_its_bound_is_refused(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("jpg/zeros.jpg", b"\0" * (4 * 2**20))
    with pytest.raises(ArchiveRefused, match="more than"):
        extract(path, tmp_path / "out", kind="zip", label="t", max_bytes=2**20)


# ---- the source table -----------------------------------------------------------------------------

def test_every_recorded_checksum_is_well_formed_and_sourced():
    table = json.loads(SOURCES_FILE.read_text())
    parse_table(table)     # refuses a malformed digest, a checksum without its source, a null without a note
    for benchmark, entry in table["benchmarks"].items():
        for archive in entry["archives"]:
            for spec in (archive, archive.get("inner") or {}):
                for kind, length in DIGEST_LENGTHS.items():
                    if kind in spec:
                        assert re.fullmatch(f"[0-9a-f]{{{length}}}", spec[kind]), (benchmark, archive["name"], kind)
                        assert spec["checksum_source"].strip()
            assert any(kind in archive for kind in DIGEST_LENGTHS) or "inner" in archive or (
                archive.get("checksum", "missing") is None and archive["note"].strip()), (benchmark, archive["name"])


def test_every_benchmark_that_needs_data_has_a_source_or_a_reason():
    sources = load_sources()
    for name, benchmark in BENCHMARKS.items():
        if not benchmark.needs_root:
            continue
        source = sources[name]
        for archive in source.archives:
            assert archive.urls or source.unavailable, f"{name}/{archive.name} has no URL and no reason"


def test_a_malformed_checksum_is_refused():
    with pytest.raises(DatasetError, match="sha256 must be 64"):
        parse_table({"benchmarks": {"x": {"archives": [{"name": "a.tar", "url": "http://h/a.tar", "sha256": "abc",
                                                        "checksum_source": "s"}]}}})
