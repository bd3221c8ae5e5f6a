"""Images from what users write: a file path, an http(s) URL, a `data:` URI, raw bytes or a PIL image.

A server fetches URLs on a client's behalf, so `MediaPolicy` says what it may reach: by default no loopback,
link-local or private address (each hop of a redirect is checked again), no local files unless under an allowed
directory (after resolving `..` and symlinks), a timeout and a byte limit per fetch, and only image/video content
types. Decoding refuses decompression bombs, huge dimensions, truncated and corrupt files. Every refusal is an
`InputError` with the reason, which a server answers with a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import ipaddress
import socket
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from swiftcli.errors import InputError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class MediaPolicy:
    """What image references may point at, and how big an image may be.

    `local_dir` None with `allow_any_local` False refuses file paths (a server's default); the CLI, reading the
    user's own files, allows any path. `allowed_domains` holds host names and CIDRs that may be fetched even when
    they resolve to private addresses.
    """

    allow_any_local: bool = False
    local_dir: Path | None = None
    allowed_domains: tuple[str, ...] = ()
    timeout_s: float = 10.0
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    base_dir: Path | None = None  # relative paths are taken from here (a dataset file's folder)
    _networks: tuple[IpNetwork, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks = []
        for entry in self.allowed_domains:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue  # a host name, matched by name
        object.__setattr__(self, "_networks", tuple(networks))

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == d.lower() or host.endswith("." + d.lower().lstrip("."))
                   for d in self.allowed_domains)

    def address_allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in net for net in self._networks)


CLI_POLICY = MediaPolicy(allow_any_local=True)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and the hash of the bytes it came from (the same picture by any route hashes the same)."""

    image: Image.Image
    sha256: str


def load_image(ref: Any, policy: MediaPolicy = CLI_POLICY) -> LoadedImage:
    """Decode one image reference under `policy`."""
    if isinstance(ref, Image.Image):
        buf = io.BytesIO()
        ref.save(buf, format="PNG")
        return LoadedImage(_rgb(ref), hashlib.sha256(buf.getvalue()).hexdigest())
    if isinstance(ref, bytes | bytearray):
        return decode_image(bytes(ref), policy)
    if isinstance(ref, dict):  # {"url": ...} as in OpenAI's image_url, {"path"|"bytes": ...} as in datasets
        for key in ("url", "image_url", "path", "bytes", "image"):
            if ref.get(key) is not None:
                return load_image(ref[key], policy)
        raise InputError("an image object needs a url, path or bytes")
    if not isinstance(ref, str) or not ref.strip():
        raise InputError(f"an image must be a path, URL or data URI, not {type(ref).__name__}")
    ref = ref.strip()
    if ref.startswith("data:"):
        return decode_image(_data_uri_bytes(ref), policy)
    scheme = urlsplit(ref).scheme.lower()
    if scheme in ("http", "https"):
        return decode_image(fetch(ref, policy), policy)
    if scheme == "file":
        return decode_image(_read_local(urlsplit(ref).path, policy), policy)
    if len(scheme) > 1:  # a one-letter scheme is a Windows drive
        raise InputError(f"image URLs must be http, https or data, not {scheme}:")
    return decode_image(_read_local(ref, policy), policy)


def load_images(refs: Sequence[Any], policy: MediaPolicy = CLI_POLICY) -> list[LoadedImage]:
    return [load_image(ref, policy) for ref in refs]


def _data_uri_bytes(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise InputError("a data URI needs a comma before its data")
    media_type = header[5:].split(";")[0].strip().lower()
    if media_type and not media_type.startswith(("image/", "video/")):
        raise InputError(f"data URI has content type {media_type}, not an image")
    if not header.endswith(";base64"):
        raise InputError("image data URIs must be base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the data URI's base64 payload is not valid") from None


def _read_local(path_text: str, policy: MediaPolicy) -> bytes:
    path = Path(path_text).expanduser()
    if not path.is_absolute() and policy.base_dir is not None:
        path = policy.base_dir / path
    if not policy.allow_any_local:
        if policy.local_dir is None:
            raise InputError("local image paths are not allowed here",
                             "send the image as a URL or data URI (the server allows paths under "
                             "--allowed_local_media_path only)")
        root = policy.local_dir.resolve()
        if ".." in Path(path_text).parts:
            raise InputError("local image paths must not contain '..'")
        resolved = path.resolve() if path.is_absolute() else (root / path).resolve()
        if not resolved.is_relative_to(root):
            raise InputError("local image path is outside the allowed media directory")
        path = resolved
    try:
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise InputError(f"image file is {size} bytes, more than the limit of {policy.max_bytes}")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"image file {path_text} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"image path {path_text} is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read image file {path_text}: {exc.strerror}") from None


def check_address(host: str, port: int, policy: MediaPolicy) -> None:
    """Refuse a host that resolves to a loopback, link-local, private or otherwise non-public address, unless the
    policy allows the host by name or the address by CIDR."""
    if policy.host_allowed(host):
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InputError(f"cannot resolve image host {host}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global and not policy.address_allowed(address):
            raise InputError(f"image host {host} is a private, loopback or link-local address",
                             "the server fetches only public addresses unless --allowed_media_domains names it")


def fetch(url: str, policy: MediaPolicy) -> bytes:
    """GET an image URL under the policy: each redirect re-checked, a timeout, a byte limit, an image type."""
    current = url
    with httpx.Client(timeout=policy.timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InputError("image URLs must be http or https with a host")
            check_address(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), policy)
            try:
                with client.stream("GET", current) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise InputError("the image URL redirected without a location")
                        current = urljoin(current, location)
                        continue
                    if response.status_code != 200:
                        raise InputError(f"fetching the image URL gave HTTP {response.status_code}")
                    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if not media_type.startswith(("image/", "video/")):
                        raise InputError(f"the image URL has content type {media_type or 'none'}, not an image")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                        raise InputError(f"the image is {declared} bytes, more than the limit of {policy.max_bytes}")
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > policy.max_bytes:
                            raise InputError(f"the image is more than the limit of {policy.max_bytes} bytes")
                    return bytes(body)
            except httpx.TimeoutException:
                raise InputError(f"fetching the image URL timed out after {policy.timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise InputError(f"cannot fetch the image URL: {type(exc).__name__}") from None
    raise InputError(f"the image URL redirected more than {MAX_REDIRECTS} times")


def decode_image(data: bytes, policy: MediaPolicy = CLI_POLICY) -> LoadedImage:
    """Decode image bytes fully; InputError for corrupt, truncated, oversized and bomb images."""
    if len(data) > policy.max_bytes:
        raise InputError(f"the image is {len(data)} bytes, more than the limit of {policy.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > policy.max_pixels:
                raise InputError(f"the image is {width}x{height} pixels, more than the limit of "
                                 f"{policy.max_pixels} pixels")
            image.load()  # decodes everything now: a truncated file fails here, not in the engine
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError("the image's dimensions are too large (a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise InputError("the data is not an image in a known format") from None
    except (OSError, ValueError, SyntaxError):
        raise InputError("the image is truncated or corrupt") from None
    return LoadedImage(_rgb(image), hashlib.sha256(data).hexdigest())


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")
