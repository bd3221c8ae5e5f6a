"""Images and videos from what users write: a file path, an http(s) URL, a `data:` URI, raw bytes (or a PIL image).

A server fetches URLs on a client's behalf, so `MediaPolicy` says what it may reach: by default no loopback,
link-local or private address (each hop of a redirect is checked again), no local files unless under an allowed
directory (after resolving `..` and symlinks), a timeout and a byte limit per fetch, and only image/* content for
an image, video/* for a video. Decoding refuses decompression bombs, huge dimensions, truncated and corrupt files.
Every refusal is an `InputError` with the reason, which a server answers with a 400.

Videos are decoded into frames with OpenCV, the decoder vLLM itself uses on CPU: at most `MAX_VIDEO_FRAMES` frames
sampled evenly over the video, as vLLM's `(frames, metadata)` pair for its `{"video": [...]}` input.
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
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
from PIL import Image, UnidentifiedImageError

from swiftcli.errors import InputError, MissingDependencyError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_REDIRECTS = 3
MAX_VIDEO_FRAMES = 32  # frames sampled from a video; the model's processor may take fewer
Kind = Literal["image", "video"]
A_KIND = {"image": "an image", "video": "a video"}


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
    return decode_image(media_bytes(ref, policy, "image"), policy)


def media_bytes(ref: Any, policy: MediaPolicy = CLI_POLICY, kind: Kind = "image") -> bytes:
    """The bytes an image or video reference points at, fetched or read under `policy`."""
    if isinstance(ref, bytes | bytearray):
        return bytes(ref)
    if isinstance(ref, dict):  # {"url": ...} as in OpenAI's image_url, {"path"|"bytes": ...} as in datasets
        for key in ("url", f"{kind}_url", "path", "bytes", kind):
            if ref.get(key) is not None:
                return media_bytes(ref[key], policy, kind)
        raise InputError(f"{A_KIND[kind]} object needs a url, path or bytes")
    if not isinstance(ref, str) or not ref.strip():
        raise InputError(f"{A_KIND[kind]} must be a path, URL or data URI, not {type(ref).__name__}")
    ref = ref.strip()
    if ref.startswith("data:"):
        return _data_uri_bytes(ref, kind)
    scheme = urlsplit(ref).scheme.lower()
    if scheme in ("http", "https"):
        return fetch(ref, policy, kind)
    if scheme == "file":
        return _read_local(urlsplit(ref).path, policy, kind)
    if len(scheme) > 1:  # a one-letter scheme is a Windows drive
        raise InputError(f"{kind} URLs must be http, https or data, not {scheme}:")
    return _read_local(ref, policy, kind)


def load_images(refs: Sequence[Any], policy: MediaPolicy = CLI_POLICY) -> list[LoadedImage]:
    return [load_image(ref, policy) for ref in refs]


def image_data_uri(path: str, policy: MediaPolicy = CLI_POLICY) -> str:
    """A local image file as a `data:` URI, checked by decoding it first: a server reads no client paths, and a
    file that is no image fails here with the reason rather than at the server."""
    data = _read_local(path, policy)
    decode_image(data, policy)
    with Image.open(io.BytesIO(data)) as image:
        media_type = Image.MIME.get(image.format or "", "image/png")
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _data_uri_bytes(uri: str, kind: Kind = "image") -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise InputError("a data URI needs a comma before its data")
    media_type = header[5:].split(";")[0].strip().lower()
    if media_type and not media_type.startswith(f"{kind}/"):
        raise InputError(f"data URI has content type {media_type}, not {A_KIND[kind]}")
    if not header.endswith(";base64"):
        example = "data:image/png;base64" if kind == "image" else "data:video/mp4;base64"
        raise InputError(f"{kind} data URIs must be base64 ({example},...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the data URI's base64 payload is not valid") from None


def _read_local(path_text: str, policy: MediaPolicy, kind: Kind = "image") -> bytes:
    path = Path(path_text).expanduser()
    if not path.is_absolute() and policy.base_dir is not None:
        path = policy.base_dir / path
    if not policy.allow_any_local:
        if policy.local_dir is None:
            raise InputError(f"local {kind} paths are not allowed here",
                             f"send the {kind} as a URL or data URI (the server allows paths under "
                             "--allowed_local_media_path only)")
        root = policy.local_dir.resolve()
        if ".." in Path(path_text).parts:
            raise InputError(f"local {kind} paths must not contain '..'")
        resolved = path.resolve() if path.is_absolute() else (root / path).resolve()
        if not resolved.is_relative_to(root):
            raise InputError(f"local {kind} path is outside the allowed media directory")
        path = resolved
    try:
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise InputError(f"{kind} file is {size} bytes, more than the limit of {policy.max_bytes}")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{kind} file {path_text} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{kind} path {path_text} is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read {kind} file {path_text}: {exc.strerror}") from None


def check_address(host: str, port: int, policy: MediaPolicy, kind: Kind = "image") -> None:
    """Refuse a host that resolves to a loopback, link-local, private or otherwise non-public address, unless the
    policy allows the host by name or the address by CIDR."""
    if policy.host_allowed(host):
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InputError(f"cannot resolve {kind} host {host}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global and not policy.address_allowed(address):
            raise InputError(f"{kind} host {host} is a private, loopback or link-local address",
                             "the server fetches only public addresses unless --allowed_media_domains names it")


def fetch(url: str, policy: MediaPolicy, kind: Kind = "image") -> bytes:
    """GET an image (video) URL under the policy: each redirect re-checked, a timeout, a byte limit, an
    image/* (video/*) content type."""
    current = url
    with httpx.Client(timeout=policy.timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InputError(f"{kind} URLs must be http or https with a host")
            check_address(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), policy, kind)
            try:
                with client.stream("GET", current) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise InputError(f"the {kind} URL redirected without a location")
                        current = urljoin(current, location)
                        continue
                    if response.status_code != 200:
                        raise InputError(f"fetching the {kind} URL gave HTTP {response.status_code}")
                    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if not media_type.startswith(f"{kind}/"):
                        raise InputError(f"the {kind} URL has content type {media_type or 'none'}, not {A_KIND[kind]}")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                        raise InputError(f"the {kind} is {declared} bytes, more than the limit of {policy.max_bytes}")
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > policy.max_bytes:
                            raise InputError(f"the {kind} is more than the limit of {policy.max_bytes} bytes")
                    return bytes(body)
            except httpx.TimeoutException:
                raise InputError(f"fetching the {kind} URL timed out after {policy.timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise InputError(f"cannot fetch the {kind} URL: {type(exc).__name__}") from None
    raise InputError(f"the {kind} URL redirected more than {MAX_REDIRECTS} times")


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


@dataclass(frozen=True)
class LoadedVideo:
    """A decoded video: sampled RGB frames (frames, height, width, 3) as uint8, vLLM's metadata for them (the
    source's frame count, fps and duration, and which frames were kept), and the hash of the video's bytes."""

    frames: np.ndarray
    metadata: dict[str, Any]
    sha256: str

    def engine_item(self) -> tuple[np.ndarray, dict[str, Any]]:
        """The `(frames, metadata)` pair vLLM's `{"video": [...]}` input takes."""
        return self.frames, dict(self.metadata)


def load_video(ref: Any, policy: MediaPolicy = CLI_POLICY, max_frames: int = MAX_VIDEO_FRAMES) -> LoadedVideo:
    """Fetch or read one video reference under `policy` and decode it into at most `max_frames` frames."""
    return decode_video(media_bytes(ref, policy, "video"), policy, max_frames)


def load_videos(refs: Sequence[Any], policy: MediaPolicy = CLI_POLICY) -> list[LoadedVideo]:
    return [load_video(ref, policy) for ref in refs]


def decode_video(data: bytes, policy: MediaPolicy = CLI_POLICY, max_frames: int = MAX_VIDEO_FRAMES) -> LoadedVideo:
    """Decode video bytes into frames sampled evenly over the video; InputError for what is no video, too large
    a frame, or a video whose frames do not decode."""
    if len(data) > policy.max_bytes:
        raise InputError(f"the video is {len(data)} bytes, more than the limit of {policy.max_bytes}")
    cv2 = _opencv()
    stream = io.BytesIO(data)  # held until the capture is released: OpenCV reads it without keeping a reference
    capture = cv2.VideoCapture(stream, _stream_backend(cv2), [])
    try:
        if not capture.isOpened():
            raise InputError("the data is not a video in a known format")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if total < 1 or width < 1 or height < 1:
            raise InputError("the video has no frames")
        if width * height > policy.max_pixels:
            raise InputError(f"the video's frames are {width}x{height} pixels, more than the limit of "
                             f"{policy.max_pixels} pixels")
        wanted = sorted({int(i) for i in np.linspace(0, total - 1, min(max_frames, total))})
        frames, kept = _read_frames(cv2, capture, wanted)
    finally:
        capture.release()
        stream.close()
    if not frames:
        raise InputError("the video is truncated or corrupt: no frame decodes")
    metadata = {"total_num_frames": total, "fps": fps, "duration": total / fps if fps > 0 else 0.0,
                "video_backend": "opencv", "frames_indices": kept, "do_sample_frames": False}
    return LoadedVideo(np.stack(frames), metadata, hashlib.sha256(data).hexdigest())


def _read_frames(cv2: Any, capture: Any, wanted: list[int]) -> tuple[list[np.ndarray], list[int]]:
    """The wanted frames (RGB), read in one pass: grab() skips a frame without decoding it."""
    frames: list[np.ndarray] = []
    kept: list[int] = []
    targets = set(wanted)
    for index in range(wanted[-1] + 1):
        if not capture.grab():
            break
        if index in targets:
            ok, frame = capture.retrieve()
            if ok and frame is not None:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                kept.append(index)
    return frames, kept


def _opencv() -> Any:
    try:
        import cv2  # here: only videos need OpenCV (installed with vLLM), and importing it costs start-up time
    except ImportError as exc:
        raise MissingDependencyError(f"decoding videos needs OpenCV ({exc})",
                                     "pip install opencv-python-headless") from None
    return cv2


def _stream_backend(cv2: Any) -> int:
    """A video I/O backend that reads from memory (FFmpeg where built in), as vLLM picks one."""
    registry = cv2.videoio_registry
    for backend in registry.getStreamBufferedBackends():
        if registry.hasBackend(backend):
            return int(backend)
    raise MissingDependencyError("this OpenCV build cannot decode videos from memory",
                                 "pip install opencv-python-headless")
