"""A local Hugging Face Hub endpoint for tests: the real huggingface_hub client (HF_ENDPOINT=http://127.0.0.1:PORT)
downloads model repositories from it as it does from the hub.

It answers what huggingface_hub 2.x asks (see its hf_api.py and file_download.py): repo info
(/api/models/{id}[/revision/{rev}], with the commit `sha`), the file tree (/api/models/{id}/tree/{rev}, with sizes
and LFS metadata), and HEAD/GET /{id}/resolve/{rev}/{path} with X-Repo-Commit, an ETag (sha256 for LFS files, as
X-Linked-Etag too, git's blob sha1 otherwise), Content-Length and ranged GETs (206 + Content-Range). Errors carry the
hub's X-Error-Code: RepoNotFound (404), RevisionNotFound (404), EntryNotFound (404), GatedRepo (401 without a
token, 403 with one that was not granted).

`stall_after` makes a download stop sending after that many bytes of a file until `release` is set, so a test can
kill the client at a known point by polling the partial file's size.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

LFS_MIN_SIZE = 1024 * 1024
CHUNK = 256 * 1024
GRANTED_TOKEN = "hf_test_granted"


@dataclass
class RepoFile:
    path: str
    source: Path | None  # None: a file listed with `size` but never served (for the disk-space check)
    size: int
    sha256: str
    git_sha1: str

    @property
    def lfs(self) -> bool:
        return self.size >= LFS_MIN_SIZE

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1


@dataclass
class Repo:
    repo_id: str
    files: dict[str, RepoFile]
    gated: bool = False
    commit: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.repo_id.encode())
        for f in sorted(self.files.values(), key=lambda f: f.path):
            digest.update(f"{f.path}:{f.etag}".encode())
        self.commit = digest.hexdigest()


def repo_from_folder(repo_id: str, folder: Path, gated: bool = False, names: tuple[str, ...] | None = None) -> Repo:
    """A repository of the folder's files (or only those in `names`)."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and (names is None or path.name in names):
            data = path.read_bytes()
            sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            files[path.name] = RepoFile(path.name, path, len(data), hashlib.sha256(data).hexdigest(), sha1)
    return Repo(repo_id, files, gated)


def repo_with_sizes(repo_id: str, sizes: dict[str, int]) -> Repo:
    """A repository that lists files of the given sizes (it serves none of them)."""
    files = {name: RepoFile(name, None, size, hashlib.sha256(name.encode()).hexdigest(),
                            hashlib.sha1(name.encode()).hexdigest()) for name, size in sizes.items()}
    return Repo(repo_id, files)


@dataclass
class HubEndpoint:
    repos: dict[str, Repo]
    server: ThreadingHTTPServer | None = None
    requests: list[str] = field(default_factory=list)  # "METHOD path" of every request
    sent: dict[str, int] = field(default_factory=dict)  # file path -> body bytes sent
    stall_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HubEndpoint:
        endpoint = self

        class Handler(_Handler):
            hub = endpoint

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?P<sub>/.*)?)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubEndpoint
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return None

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(body=False)

    def _route(self, body: bool) -> None:
        path = unquote(urlparse(self.path).path)
        self.hub.requests.append(f"{self.command} {path}")
        api, resolve = _API.match(path), _RESOLVE.match(path)
        match = api or resolve
        if match is None:
            return self._error(404, "RepoNotFound", "not a hub route")
        repo = self.hub.repos.get(match["repo"])
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        rev = match["rev"]
        if rev is not None and rev not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id", repo)
        if api is not None:
            return self._api(repo, api["kind"])
        if repo.gated and not self._granted():
            return self._error(403 if self.headers.get("Authorization") else 401, "GatedRepo",
                               "Access to this model is restricted: log in and accept its terms", repo)
        entry = repo.files.get(match["path"])
        if entry is None:
            return self._error(404, "EntryNotFound", "Entry not found", repo)
        self._file(repo, entry, body)

    def _granted(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {GRANTED_TOKEN}"

    def _api(self, repo: Repo, kind: str | None) -> None:
        if kind == "tree":
            tree = []
            for f in repo.files.values():
                item: dict[str, Any] = {"type": "file", "path": f.path, "size": f.size, "oid": f.git_sha1}
                if f.lfs:
                    item["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
                tree.append(item)
            return self._json(tree)
        self._json({"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit, "private": False,
                    "gated": "manual" if repo.gated else False,
                    "siblings": [{"rfilename": name} for name in repo.files]})

    def _file(self, repo: Repo, entry: RepoFile, body: bool) -> None:
        assert entry.source is not None, "this test repository lists files it does not serve"
        start, end = 0, entry.size - 1
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            start = int(ranged[1])
            end = int(ranged[2]) if ranged[2] else end
        self.send_response(206 if ranged else 200)
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("ETag", f'"{entry.etag}"')
        if entry.lfs:
            self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
            self.send_header("X-Linked-Size", str(entry.size))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{entry.size}")
        self.end_headers()
        if body:
            self._send_body(entry, start, end)

    def _send_body(self, entry: RepoFile, start: int, end: int) -> None:
        assert entry.source is not None
        sent = 0
        try:
            with entry.source.open("rb") as source:
                source.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    stall = self.hub.stall_after
                    if stall is not None and sent >= stall and entry.lfs:
                        self.hub.release.wait(timeout=120)
                    chunk = source.read(min(CHUNK, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    remaining -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.hub.sent[entry.path] = self.hub.sent.get(entry.path, 0) + sent

    def _json(self, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _error(self, status: int, code: str, message: str, repo: Repo | None = None) -> None:
        payload = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if repo is not None:
            self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
