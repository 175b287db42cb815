"""Retry, backoff and error reporting shared by every download source.

All network calls of the download stage go through :func:`call_with_retry`. A call is retried
when it fails in a way that may go away by itself (HTTP 429 and 5xx, timeouts, dropped
connections, truncated or garbled JSON). Waits grow exponentially from ``backoff_base_s`` and
a ``Retry-After`` header sent by the server is honoured (the client never waits less than the
server asked for). Client errors (HTTP 4xx other than 408 and 429) are not retried.

When all attempts fail because the host cannot be reached, :class:`DownloadError` names the
host and points to the local-file source, so an offline user knows what to do next.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
OFFLINE_HINT = (
    "If this machine has no internet access, download the data elsewhere and use the local-file "
    "source instead (dataset: {source: local, path: <table.csv|parquet|json>})."
)


class DownloadError(RuntimeError):
    """A download failed for good (after retries, or because retrying cannot help)."""


class TransientError(RuntimeError):
    """A failure that may go away when the request is repeated."""

    def __init__(self, message: str, retry_after: float | None = None, kind: str = "transient"):
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind


class UnreachableError(TransientError):
    """No HTTP response at all: refused connection, DNS failure, connect timeout."""

    def __init__(self, message: str):
        super().__init__(message, kind="unreachable")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is retried.

    ``backoff_base_s * 2**attempt`` (capped at ``backoff_max_s``, with up to 10 % jitter) is
    waited between attempts, or the server's ``Retry-After`` if that is longer.
    """

    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 120.0
    timeout_s: float = 60.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> RetryPolicy:
        """Build a policy from the ``http`` config section (missing keys keep defaults)."""
        cfg = dict(cfg or {})
        known = {"max_retries", "backoff_base_s", "backoff_max_s", "timeout_s"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown http settings {unknown}; known: {sorted(known)}")
        policy = cls(**cfg)
        if policy.max_retries < 0 or policy.backoff_base_s < 0 or policy.timeout_s <= 0:
            raise ValueError(f"invalid http settings {cfg}: retries/backoff must be >= 0, timeout > 0")
        return policy

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), without Retry-After."""
        base = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return base * (1.0 + 0.1 * random.random())


@dataclass
class RetryStats:
    """Counts of retried failures by kind, and the total seconds spent waiting."""

    counts: Counter[str] = field(default_factory=Counter)
    waited_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_kind": dict(sorted(self.counts.items())), "waited_s": round(self.waited_s, 3)}


def host_of(url: str) -> str:
    """``host:port`` of a URL (for error messages)."""
    parts = urlsplit(url)
    return parts.netloc or url


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for_status(status: int, url: str, headers: Any, body: str = "") -> Exception:
    """The exception for a non-200 response: transient for 429/5xx, DownloadError otherwise."""
    snippet = body.strip().replace("\n", " ")[:300]
    message = f"HTTP {status} from {host_of(url)} ({urlsplit(url).path})" + (f": {snippet}" if snippet else "")
    if status in RETRY_STATUS:
        return TransientError(message, parse_retry_after(headers.get("Retry-After")), kind=f"http_{status}")
    return DownloadError(message)


def classify(exc: BaseException) -> TransientError | None:
    """Map a low-level exception to a TransientError, or None when it must not be retried."""
    if isinstance(exc, TransientError):
        return exc
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError)) and not isinstance(
        exc, requests.exceptions.ChunkedEncodingError
    ):
        return UnreachableError(str(exc))
    if isinstance(exc, requests.exceptions.Timeout):
        return TransientError(str(exc), kind="timeout")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return TransientError(str(exc), kind="truncated")
    if isinstance(exc, json.JSONDecodeError):
        return TransientError(f"invalid JSON: {exc}", kind="bad_json")
    return None


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    url: str,
    policy: RetryPolicy,
    stats: RetryStats,
    classify_error: Callable[[BaseException], TransientError | None] = classify,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, retrying transient failures with exponential backoff.

    ``what`` describes the request in log messages; ``url`` is used to name the host in errors.
    Raises :class:`DownloadError` when retries are exhausted or the failure is permanent.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except DownloadError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised if unknown
            transient = classify_error(exc)
            if transient is None:
                raise
            if attempt >= policy.max_retries:
                raise _final_error(what, url, transient, attempt + 1) from exc
            wait = policy.backoff(attempt)
            if transient.retry_after is not None:
                wait = max(wait, transient.retry_after)
            stats.counts[transient.kind] += 1
            stats.waited_s += wait
            log.warning(
                "%s failed (%s: %s); retry %d/%d in %.2f s",
                what,
                transient.kind,
                _short(str(transient)),
                attempt + 1,
                policy.max_retries,
                wait,
            )
            sleep(wait)
            attempt += 1


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _final_error(what: str, url: str, err: TransientError, attempts: int) -> DownloadError:
    if isinstance(err, UnreachableError):
        return DownloadError(
            f"cannot reach host {host_of(url)} ({url}) for {what} after {attempts} attempts: "
            f"{_short(str(err))}. {OFFLINE_HINT}"
        )
    return DownloadError(f"{what} failed after {attempts} attempts ({err.kind}): {_short(str(err))}")


class ResponseRecorder:
    """A ``requests`` response hook that remembers the last response of a session.

    Client libraries (mp-api, qmpy-rester) swallow status codes and headers into their own
    exceptions or return values; this hook lets us see the status and ``Retry-After``.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def reset(self) -> None:
        self._local.response = None

    @property
    def last(self) -> requests.Response | None:
        return getattr(self._local, "response", None)

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self._local.response = response
        return response

    def attach(self, session: requests.Session) -> None:
        session.hooks.setdefault("response", []).append(self)


def raise_retryable_status(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A response hook that raises :class:`TransientError` for 429/5xx before a client library sees it.

    Client libraries have their own ideas about failed responses: mp-api, for one, re-sends a
    query at once, split in batches, whenever its error message contains "414" or "422", which
    a port number or a material id in the URL can contain. Raised here, a retryable status
    always reaches :func:`call_with_retry`, which waits as long as ``Retry-After`` asks.
    """
    if response.status_code in RETRY_STATUS:
        raise error_for_status(response.status_code, response.url, response.headers, response.text)
    return response


class TimeoutAdapter(requests.adapters.HTTPAdapter):
    """An adapter without urllib3 retries that applies our timeout to every request.

    The policy's timeout replaces whatever the client library passes (mp-api uses a fixed 20 s,
    qmpy-rester none at all), so ``http.timeout_s`` in the config is what counts.
    """

    def __init__(self, timeout_s: float) -> None:
        super().__init__(max_retries=0)
        self.timeout_s = timeout_s

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["timeout"] = self.timeout_s
        return super().send(request, **kwargs)


def make_session(
    policy: RetryPolicy, headers: dict[str, str] | None = None
) -> tuple[requests.Session, ResponseRecorder]:
    """A session whose retries are ours (none in urllib3), with a default timeout and a recorder."""
    session = requests.Session()
    adapter = TimeoutAdapter(policy.timeout_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if headers:
        session.headers.update(headers)
    recorder = ResponseRecorder()
    recorder.attach(session)
    return session, recorder


def get_bytes(
    session: requests.Session, url: str, *, stream_to: Any = None, headers: dict[str, str] | None = None
) -> requests.Response:
    """GET ``url`` (one attempt); raise TransientError/DownloadError for non-2xx responses."""
    response = session.get(url, headers=headers, stream=stream_to is not None)
    if response.status_code not in (200, 206):
        body = response.text if stream_to is None else ""
        raise error_for_status(response.status_code, url, response.headers, body)
    return response


# --------------------------------------------------------------------------- one verified file
def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes (read afresh: a ``.part`` file changes under the same name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ChecksumMismatch(TransientError):
    """A finished transfer whose sha256 is not the expected one (retried: it may be corrupt)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="checksum")


def fetch_once(session: requests.Session, url: str, part: Path) -> None:
    """One attempt: continue ``part`` with a Range request if it has bytes, else start over."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else None
    response = get_bytes(session, url, stream_to=part, headers=headers)
    with response:
        mode = "ab" if have and response.status_code == 206 else "wb"
        if have and mode == "wb":
            log.info("server ignored the Range request; downloading %s from the start", url)
        with open(part, mode) as fh:
            for block in response.iter_content(1 << 12):
                fh.write(block)


def fetch_verified(
    session: requests.Session, url: str, dest: Path, sha256: str, policy: RetryPolicy, stats: RetryStats
) -> bool:
    """Make ``dest`` a verified copy of ``url``; returns True if it was downloaded (not reused).

    The transfer goes to ``<dest>.part`` (resumed with a Range request after a cut) and is
    renamed to ``dest`` only when its sha256 is ``sha256``. A mismatching file is deleted and
    fetched again (a retry of kind ``checksum``: a corrupted transfer); the same wrong sha256
    twice in a row is the file the server holds, not a corruption, and stops at once with a
    :class:`DownloadError` naming the expected and the received sha256.
    """
    sha256 = sha256.lower()

    def check(path: Path) -> str | None:
        actual = sha256_of(path)
        if actual == sha256:
            return None
        return f"checksum mismatch for {dest.name} (sha256): expected {sha256}, got {actual}"

    return fetch_checked(session, url, dest, check, policy, stats)


def fetch_checked(
    session: requests.Session,
    url: str,
    dest: Path,
    check: Callable[[Path], str | None],
    policy: RetryPolicy,
    stats: RetryStats,
) -> bool:
    """Make ``dest`` a checked copy of ``url``; returns True if it was downloaded (not reused).

    ``check(path)`` returns None for the expected file, else the reason it is not (e.g. the
    sha256 of a file inside an archive that cannot be pinned itself). As :func:`fetch_verified`:
    the transfer goes to ``<dest>.part`` (resumed after a cut), is renamed to ``dest`` only when
    it passes, a failing file is deleted and fetched again (a ``checksum`` retry), and the same
    failing file twice in a row (same sha256) stops with a :class:`DownloadError`. A ``dest``
    left by an earlier run is checked and reused, or deleted and fetched again.
    """
    if dest.exists():
        problem = check(dest)
        if problem is None:
            log.info("reusing verified %s", dest)
            return False
        log.warning("%s does not pass its check (%s); downloading it again", dest, problem)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    seen: list[str] = []

    def attempt() -> None:
        fetch_once(session, url, part)
        problem = check(part)
        if problem is not None:
            received = sha256_of(part)
            part.unlink()
            message = f"{problem} (the file from {url}; deleted)"
            if seen and seen[-1] == received:
                raise DownloadError(
                    f"{message}; the same file arrived twice, so the server holds a different file than "
                    "the checksum describes (a changed file, or a wrong checksum in the config)"
                )
            seen.append(received)
            raise ChecksumMismatch(message)
        part.replace(dest)

    call_with_retry(attempt, what=f"downloading {dest.name}", url=url, policy=policy, stats=stats)
    return True
