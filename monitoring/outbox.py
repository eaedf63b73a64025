"""The notification outbox: messages written in the same transaction as what caused them,
delivered by the scheduler over SMTP with retries and backoff. Nothing is lost (a message
stays until sent) and a retry never resends a message that went out (each send is committed
on its own, and carries a stable Message-ID for receivers that deduplicate)."""
from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import format_datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from config.db import unit_of_work
from config.extensions import db

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(minutes=15)
FAILING_AFTER_ATTEMPTS = 3  # shown on the board as a delivery problem from this many failures
BATCH = 50
SUBJECT_LENGTH = 150  # characters; a subject is one line a phone's lock screen mostly shows


def one_line(text: str, limit: int = SUBJECT_LENGTH) -> str:
    """``text`` as one line for an e-mail Subject: every run of whitespace or control
    characters (line breaks, tabs, Unicode line separators) becomes one space, and text over
    ``limit`` characters is cut at a word boundary with an ellipsis.

    A header value holding CR or LF cannot be put in an e-mail at all, so a nurse's
    multi-line note copied into the subject would otherwise stop the message.
    """
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    single = " ".join(cleaned.split())
    if len(single) <= limit:
        return single
    cut = single[:limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:.-") + "\u2026"


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        # failed: the message cannot be built (a header e-mail refuses); never retried, shown.
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        sa.Index("ix_outbox_messages_due", "status", "next_attempt_at"),
        sa.UniqueConstraint("dedup_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("units.id"), index=True)
    dedup_key: Mapped[str] = mapped_column(sa.String(200))
    recipient_staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    recipient_address: Mapped[str | None] = mapped_column(sa.String(254))
    subject: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text)
    ref_type: Mapped[str | None] = mapped_column(sa.String(40))
    ref_id: Mapped[int | None]
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


def enqueue(*, unit_id: int, dedup_key: str, recipient_staff_id: int | None,
            recipient_address: str | None, subject: str, body: str, ref_type: str | None,
            ref_id: int | None, now: datetime) -> bool:
    """Queue a message in the caller's transaction; the same dedup_key is queued only once."""
    return bool(enqueue_many([{"unit_id": unit_id, "dedup_key": dedup_key,
                               "recipient_staff_id": recipient_staff_id,
                               "recipient_address": recipient_address, "subject": subject,
                               "body": body, "ref_type": ref_type, "ref_id": ref_id}], now=now))


def enqueue_many(messages: list[dict], *, now: datetime) -> int:
    """Queue messages (``enqueue``'s arguments, one dict each) in the caller's transaction.

    A job paging many people (the due sweep) writes its messages in one INSERT, and reads the
    keys already queued in one query per 500, not one per message. A dedup_key already queued,
    or given twice, is queued once. Returns how many were queued.
    """
    keys = [message["dedup_key"] for message in messages]
    seen: set[str] = set()
    for start in range(0, len(keys), 500):
        seen.update(db.session.scalars(sa.select(OutboxMessage.dedup_key)
                                       .where(OutboxMessage.dedup_key.in_(keys[start:start + 500]))))
    rows = []
    for message in messages:
        if message["dedup_key"] in seen:
            continue
        seen.add(message["dedup_key"])
        rows.append({**message, "subject": one_line(message["subject"]), "status": "pending",
                     "attempts": 0, "next_attempt_at": now, "last_error": None,
                     "created_at": now, "sent_at": None})
    if rows:
        db.session.connection().execute(_INSERT_MESSAGES, rows)  # Core: no per-row ORM work
    return len(rows)


_INSERT_MESSAGES = sa.insert(OutboxMessage.__table__)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... up to 15 minutes between attempts."""
    return min(timedelta(seconds=30 * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


class Unbuildable(Exception):
    """The message cannot be made into an e-mail (a header the e-mail package refuses, such
    as a free-text rota contact holding a line break): sending it again cannot help."""


def _build(message) -> EmailMessage:
    config = current_app.config
    email = EmailMessage()
    email["From"] = config["MAIL_FROM"]
    email["To"] = message.recipient_address
    # one_line again here: a message queued before subjects were made single-line still goes.
    email["Subject"] = one_line(message.subject)
    email["Date"] = format_datetime(message.created_at)
    # Stable across retries (make_msgid adds time and randomness): a resend after a lost
    # "sent" commit carries the same Message-ID, so a receiver can drop the duplicate.
    email["Message-ID"] = (f"<outbox-{message.id}.{int(message.created_at.timestamp())}"
                           f"@{config['MAIL_MESSAGE_ID_DOMAIN']}>")
    email.set_content(message.body)
    email.as_bytes()  # serialised once here, so that a header it cannot write fails now
    return email


def _send(message) -> None:
    try:
        email = _build(message)
    except (ValueError, TypeError, MessageError) as error:
        raise Unbuildable(f"{type(error).__name__}: {error}") from error
    config = current_app.config
    host, port, timeout = config["MAIL_HOST"], config["MAIL_PORT"], config["MAIL_TIMEOUT"]
    if config["MAIL_USE_SSL"]:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if config["MAIL_USE_TLS"]:
            smtp.starttls(context=ssl.create_default_context())
        if config["MAIL_USERNAME"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        smtp.send_message(email)


def deliver_due(now: datetime) -> dict[str, int]:
    """Send every pending message whose time has come; each outcome committed on its own."""
    query = (sa.select(OutboxMessage.id)
             .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
             .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(BATCH))
    counts = {"sent": 0, "failed": 0}
    for message_id in list(db.session.scalars(query)):
        db.session.rollback()  # end the read; each message gets its own short transaction
        outcome = _deliver_one(message_id, now)
        if outcome:
            counts[outcome] += 1
    return counts


def _deliver_one(message_id: int, now: datetime) -> str | None:
    # Claim, send, record: the SMTP conversation happens outside any transaction, so a slow
    # mail server never holds a database lock (on SQLite every write would wait on it).
    claimed = _claim(message_id, now)
    if claimed is None or claimed == "sent":
        return claimed
    try:
        _send(claimed)
    except Unbuildable as error:
        # Sending it again would fail the same way: it fails now, for good, and shows on the
        # board at once; it must not stop the messages behind it or be retried in silence.
        _record(message_id, now, error=f"cannot be built as an e-mail: {error}"[:2000], final=True)
        log.error("outbox message %s cannot be built, not retried: %s", message_id, error)
        return "failed"
    except (OSError, smtplib.SMTPException, ValueError) as error:
        # ValueError: an address smtplib refuses while sending. It fails on its own and
        # shows; it must not stop the messages behind it.
        _record(message_id, now, error=f"{type(error).__name__}: {error}"[:2000])
        log.warning("outbox message %s not delivered: %s", message_id, error)
        return "failed"
    _record(message_id, now, error=None)
    return "sent"


@dataclass(frozen=True)
class _Claimed:
    id: int
    recipient_address: str
    subject: str
    body: str
    created_at: datetime


@unit_of_work
def _claim(message_id: int, now: datetime) -> _Claimed | str | None:
    query = sa.select(OutboxMessage).where(OutboxMessage.id == message_id,
                                           OutboxMessage.status == "pending")
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # another worker has it: leave it
    message = db.session.scalars(query).first()
    if message is None or message.next_attempt_at > now:
        return None
    if not message.recipient_address:
        # Nobody to e-mail: the message stays visible in the app; mark it done for SMTP.
        message.status, message.sent_at = "sent", now
        message.last_error = "no e-mail address: shown in the app only"
        return "sent"
    # The attempt is counted and the next one scheduled before sending: if this process dies
    # mid-send, the message is tried again after the backoff (never lost), and a second
    # scheduler does not take it meanwhile.
    message.attempts += 1
    message.next_attempt_at = now + backoff(message.attempts)
    return _Claimed(message.id, message.recipient_address, message.subject, message.body,
                    message.created_at)


@unit_of_work
def _record(message_id: int, now: datetime, *, error: str | None, final: bool = False) -> None:
    message = db.session.get(OutboxMessage, message_id)
    if error is None:
        message.status, message.sent_at, message.last_error = "sent", now, None
    else:
        message.last_error = error
        if final:
            message.status = "failed"


def failing(unit_id: int) -> list[OutboxMessage]:
    """Messages that keep failing to go out, or cannot go out at all (shown on the board)."""
    return list(db.session.scalars(
        sa.select(OutboxMessage).where(
            OutboxMessage.unit_id == unit_id,
            sa.or_(OutboxMessage.status == "failed",
                   sa.and_(OutboxMessage.status == "pending",
                           OutboxMessage.attempts >= FAILING_AFTER_ATTEMPTS)))
        .order_by(OutboxMessage.created_at)))


def for_staff(staff_id: int, limit: int = 20) -> list[OutboxMessage]:
    """The latest notifications addressed to a member of staff (shown in the app)."""
    return list(db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.recipient_staff_id == staff_id)
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc()).limit(limit)))
