"""Deploy webhooks (issue 18 item 7): per app, URLs told of every release
that succeeded or failed by a signed JSON POST.

A webhook URL is an address a user names, so it follows the rule of a
push's fetches (builder/fetch_guard.py: no loopback, private, link-local or
host address unless SHIPWAY_FETCH_ALLOW lets it through), checked when it is
added (a clear error) and again on the resolved address at every send
(controller/webhook_delivery.py), since DNS can change in between. Only
https, unless the host is in SHIPWAY_FETCH_ALLOW. Each webhook has its own
secret, shown once when it is made and kept encrypted with the keyring.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets as pysecrets
import threading
from typing import Any
from urllib.parse import urlsplit

import attrs
import sqlalchemy as sa

from builder.fetch_guard import GuardRules, Refused, parse_allow, resolve_checked
from controller.base import StoreBase, log
from controller.db import UTCDateTime, _fk, metadata, now
from controller.errors import BadRequest, NotFound
from controller.models import App, Release, User
from controller.webhook_delivery import Delivery, WebhookSender

webhooks = sa.Table(
    "webhooks", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False, index=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret_ct", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(254), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("app_id", "url", name="uq_webhooks_app_url"),
)

MAX_PER_APP = 10
MAX_URL = 2048


@attrs.frozen
class Webhook:
    id: int
    app: str
    url: str
    created_by: str
    created_at: dt.datetime
    secret: str | None = None  # only in the answer to webhooks:add


def secret_aad(app_id: int, url: str) -> str:
    return f"webhook-secret:{app_id}:{url}"


def guard_rules(fetch_allow: str) -> GuardRules:
    return GuardRules(allow=parse_allow(fetch_allow), connect_timeout=10.0, idle_timeout=10.0)


def check_webhook_url(url: object, rules: GuardRules, resolve: bool = True) -> str:
    """The URL if a webhook may post to it; BadRequest saying why not.
    `resolve`: also check where its name points now (at add time)."""
    if not isinstance(url, str) or not url.strip():
        raise BadRequest("give the webhook's URL, like https://example.com/hook")
    url = url.strip()
    if len(url) > MAX_URL or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise BadRequest("the webhook URL is too long or has spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest(f"not a URL: {url[:80]!r}") from None
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("https", "http") or not host:
        raise BadRequest("a webhook URL starts with https://")
    if parts.username is not None or parts.password is not None:
        raise BadRequest("no credentials in the webhook URL: the signature proves the sender")
    if parts.fragment:
        raise BadRequest("no #fragment in the webhook URL")
    if parts.scheme == "http" and not rules.allows(host, port):
        raise BadRequest("webhooks use https:// (plain http only to a host SHIPWAY_FETCH_ALLOW "
                         "lists)")
    if resolve:
        try:
            resolve_checked(host, port, rules)
        except Refused as refused:
            raise BadRequest(f"webhook refused: {refused}") from None
    return url


def release_payload(app: App, release: Release) -> bytes:
    """The JSON body: what a receiver needs to act on a release."""
    return json.dumps({
        "event": "release",
        "app": app.name,
        "release": release.version,
        "status": release.status,
        "commit": release.commit,
        "description": release.description,
        "user": release.created_by,
        "created_at": release.created_at.isoformat(),
        "finished_at": now().isoformat(),
    }, sort_keys=True).encode()


class WebhooksMixin(StoreBase):
    _webhook_sender: WebhookSender | None = None
    _webhook_sender_lock = threading.Lock()

    def webhook_rules(self) -> GuardRules:
        return guard_rules(self.settings.fetch_allow)

    def webhook_sender(self) -> WebhookSender:
        """Started on first use: a process that never deploys never runs it."""
        with self._webhook_sender_lock:
            if self._webhook_sender is None:
                self._webhook_sender = WebhookSender(self.webhook_rules)
            return self._webhook_sender

    def list_webhooks(self, user: User, app: str) -> list[Webhook]:
        with self.db.read() as conn:
            found = self._authorize(conn, user, app, "read")  # type: ignore[attr-defined]
            rows = conn.execute(sa.select(webhooks).where(webhooks.c.app_id == found.id)
                                .order_by(webhooks.c.id)).all()
        return [Webhook(id=r.id, app=found.name, url=r.url, created_by=r.created_by,
                        created_at=r.created_at) for r in rows]

    def add_webhook(self, user: User, app: str, url: object) -> Webhook:
        """The answer carries the secret: the only time anyone sees it."""
        self.get_app(user, app, "write")  # who may ask before what they ask
        clean = check_webhook_url(url, self.webhook_rules())
        secret = "whsec_" + pysecrets.token_urlsafe(32)
        with self.db.write() as conn:
            found = self._authorize(conn, user, app, "write")  # type: ignore[attr-defined]
            count = conn.execute(sa.select(sa.func.count()).select_from(webhooks)
                                 .where(webhooks.c.app_id == found.id)).scalar_one()
            if count >= MAX_PER_APP:
                raise BadRequest(f"too many webhooks (the limit is {MAX_PER_APP} per app)")
            if conn.execute(sa.select(webhooks.c.id).where(
                    webhooks.c.app_id == found.id, webhooks.c.url == clean)).first():
                raise BadRequest(f"{found.name} has that webhook already")
            created = now()
            hook_id = conn.execute(webhooks.insert().values(
                app_id=found.id, url=clean, created_by=user.email, created_at=created,
                secret_ct=self.keyring.encrypt(secret, secret_aad(found.id, clean)),
            )).inserted_primary_key[0]
            self.record_activity(found, user.email, "webhooks:add",  # type: ignore[attr-defined]
                                 f"added webhook {clean}", {"url": clean}, conn=conn)
        return Webhook(id=hook_id, app=found.name, url=clean, created_by=user.email,
                       created_at=created, secret=secret)

    def remove_webhook(self, user: User, app: str, which: str) -> Webhook:
        """`which`: the id `webhooks` shows, or the URL."""
        with self.db.write() as conn:
            found = self._authorize(conn, user, app, "write")  # type: ignore[attr-defined]
            query = sa.select(webhooks).where(webhooks.c.app_id == found.id)
            which = str(which).strip()
            query = query.where(webhooks.c.id == int(which) if which.isdigit()
                                else webhooks.c.url == which)
            row = conn.execute(query).first()
            if row is None:
                raise NotFound(f"{found.name} has no webhook {which[:100]!r}")
            conn.execute(webhooks.delete().where(webhooks.c.id == row.id))
            self.record_activity(found, user.email, "webhooks:remove",  # type: ignore[attr-defined]
                                 f"removed webhook {row.url}", {"url": row.url}, conn=conn)
        return Webhook(id=row.id, app=found.name, url=row.url, created_by=row.created_by,
                       created_at=row.created_at)

    def notify_release(self, app: App, release: Release) -> None:
        """Queue a signed POST to each of the app's webhooks for a release
        that ended (succeeded or failed). Never raises and never waits for a
        receiver: a webhook cannot slow or fail a deploy."""
        if release.status not in ("succeeded", "failed"):
            return
        try:
            with self.db.read() as conn:
                rows = conn.execute(sa.select(webhooks).where(webhooks.c.app_id == app.id)
                                    .order_by(webhooks.c.id)).all()
            if not rows:
                return
            body = release_payload(app, release)
            sender = self.webhook_sender()
            for row in rows:
                secret = self.keyring.decrypt(row.secret_ct, secret_aad(app.id, row.url))
                sender.submit(Delivery(webhook_id=row.id, app=app.name, url=row.url,
                                       secret=secret.encode(), body=body,
                                       release=release.version))
        except Exception:  # noqa: BLE001
            log.failure("controller: queueing the webhooks of {app} v{version} failed",
                        app=app.name, version=release.version)

    def close_webhooks(self) -> None:
        with self._webhook_sender_lock:
            if self._webhook_sender is not None:
                self._webhook_sender.close()
                self._webhook_sender = None
