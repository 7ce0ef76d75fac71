"""Sending webhook POSTs off the deploy's path: a bounded queue, a couple of
worker threads, retries with exponential backoff and a bounded number of
attempts. A receiver that is slow, down or answering 500 costs a worker at
most one timeout per attempt and never holds up a deploy.

Each POST carries `Shipway-Timestamp` (Unix seconds) and `Shipway-Signature:
sha256=<hex>`, the HMAC-SHA256 with the webhook's secret of
`<timestamp>.<raw body>`: signing the timestamp with the body means a
captured request cannot be replayed later with a fresh timestamp, and a
receiver refuses timestamps older than a few minutes. The connection goes
to an address checked at connect time (resolve_checked), with the
certificate verified against the URL's host name for https.
"""
from __future__ import annotations

import heapq
import hashlib
import hmac
import http.client
import itertools
import socket
import ssl
import threading
import time
import uuid
from typing import Callable
from urllib.parse import urlsplit

import attrs
from twisted.logger import Logger

from builder.fetch_guard import GuardRules, Refused, resolve_checked

log = Logger(namespace="shipway.webhooks")

ATTEMPTS = 5
BACKOFF = 1.0  # seconds before the 2nd attempt; doubled for each next one
TIMEOUT = 10.0
CAPACITY = 1000  # deliveries waiting; beyond, new ones are dropped and logged
WORKERS = 2


@attrs.frozen
class Delivery:
    webhook_id: int
    app: str
    url: str
    secret: bytes = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    release: int
    id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    attempt: int = 1


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `Shipway-Signature` value for `body` sent at `timestamp`."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


def post(delivery: Delivery, rules: GuardRules, timeout: float = TIMEOUT) -> int:
    """One attempt: the HTTP status, or Refused / OSError / ssl errors."""
    parts = urlsplit(delivery.url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    if not https and not rules.allows(host, port):
        raise Refused(f"{host}: plain http is only for hosts SHIPWAY_FETCH_ALLOW lists")
    addresses = resolve_checked(host, port, rules)
    sock: socket.socket | None = None
    error: OSError | None = None
    for address in addresses:  # each one checked: connect to what was checked
        try:
            sock = socket.create_connection((address[0], address[1]), timeout=timeout)
            break
        except OSError as e:
            error = e
    if sock is None:
        raise error or OSError(f"{host}: no address to connect to")
    try:
        if https:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
        timestamp = str(int(time.time()))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", path, body=delivery.body, headers={
            "Content-Type": "application/json",
            "User-Agent": "Shipway-Webhook",
            "Shipway-Timestamp": timestamp,
            "Shipway-Signature": sign(delivery.secret, timestamp, delivery.body),
            "Shipway-Delivery": delivery.id,
        })
        response = conn.getresponse()
        response.read(64 * 1024)
        return response.status
    finally:
        sock.close()


class WebhookSender:
    """The queue and its workers. Deliveries wait in a heap by due time, so
    a retry waiting out its backoff does not hold up the others."""

    def __init__(self, rules: Callable[[], GuardRules], attempts: int = ATTEMPTS,
                 backoff: float = BACKOFF, timeout: float = TIMEOUT,
                 capacity: int = CAPACITY, workers: int = WORKERS) -> None:
        self._rules = rules
        self.attempts, self.backoff, self.timeout = attempts, backoff, timeout
        self.capacity = capacity
        self.dropped = 0
        self._heap: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"webhooks-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, delivery: Delivery, delay: float = 0.0) -> bool:
        with self._cond:
            if self._closed or len(self._heap) >= self.capacity:
                self.dropped += 1
                log.warn("webhooks: queue full, dropped delivery to {url} ({app} v{release})",
                         url=delivery.url, app=delivery.app, release=delivery.release)
                return False
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), delivery))
            self._cond.notify()
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _next(self) -> Delivery | None:
        with self._cond:
            while not self._closed:
                if self._heap:
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            self._attempt(delivery)

    def _attempt(self, delivery: Delivery) -> None:
        try:
            status = post(delivery, self._rules(), self.timeout)
            if 200 <= status < 300:
                log.info("webhooks: {app} v{release} delivered to {url} ({status})",
                         app=delivery.app, release=delivery.release, url=delivery.url,
                         status=status)
                return
            why = f"HTTP {status}"
        except Refused as refused:
            # The rule, not the receiver: a retry would be refused the same.
            log.warn("webhooks: {app} v{release}: {url} refused: {why}", app=delivery.app,
                     release=delivery.release, url=delivery.url, why=str(refused))
            return
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            why = f"{type(e).__name__}: {e}"
        if delivery.attempt >= self.attempts:
            log.warn("webhooks: {app} v{release}: gave up on {url} after {n} attempts ({why})",
                     app=delivery.app, release=delivery.release, url=delivery.url,
                     n=delivery.attempt, why=why)
            return
        delay = self.backoff * 2 ** (delivery.attempt - 1)
        log.info("webhooks: {app} v{release}: {url} failed ({why}); retry in {delay}s",
                 app=delivery.app, release=delivery.release, url=delivery.url, why=why,
                 delay=delay)
        self.submit(attrs.evolve(delivery, attempt=delivery.attempt + 1), delay)
