"""Versioned schema migrations for the SQLite audit log, tracked in `PRAGMA user_version`.

Each migration runs in its own transaction together with the bump of `user_version`, so a
crash leaves the database at the previous version, never half-migrated. Migrations are
append-only and literal SQL (no text computed at import time): never edit one that has
shipped; add the next number instead.

Enumerations are stored as small integers (the codes live in `_sqlite_rows.py`): SQLite stores
0 and 1 in the record header alone and other small ints in one byte, where a text value such
as "behavioral_signals" would cost 18 bytes in the row and again in every index holding it.
Timestamps are INTEGER unix seconds (4 bytes until 2038, 6 after).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_V1_INITIAL = Migration(
    1,
    "initial schema: scans, per-guild case counters, guild settings, events",
    (
        # The highest case number ever allocated per guild. A trigger keeps it up to date
        # inside the INSERT statement itself, so numbers are never reused after deletions.
        """
        CREATE TABLE guild_counters (
            guild_id  INTEGER PRIMARY KEY,
            last_case INTEGER NOT NULL
        )
        """,
        # One row per case. The verdict lives in the row (summary columns plus `detail`, the
        # segments and the provider's own label as JSON), so deleting a case deletes
        # everything it revealed, and finishing a scan is a single UPDATE.
        """
        CREATE TABLE scans (
            id                  INTEGER PRIMARY KEY,
            guild_id            INTEGER NOT NULL,
            case_number         INTEGER NOT NULL,
            status              INTEGER NOT NULL,  -- 0 queued 1 submitted 2 done 3 failed 4 reused
            scan_trigger        INTEGER NOT NULL,  -- 0 auto 1 check 2 context_menu 3 cli
            provider            INTEGER NOT NULL,  -- 0 behavioral_signals 1 resemble
            created_at          INTEGER NOT NULL,
            submitted_at        INTEGER,
            finished_at         INTEGER,
            channel_id          INTEGER,
            message_id          INTEGER,
            author_id           INTEGER,
            attachment_id       INTEGER,
            requested_by        INTEGER,
            jump_url            TEXT,     -- '' means the canonical discord.com link
            filename            TEXT NOT NULL,
            content_type        TEXT,
            size                INTEGER,
            duration_s          REAL,
            sha256              BLOB,     -- 32 raw bytes (hex text only if not a sha256)
            provider_job_id     TEXT,
            source_url          TEXT,     -- cleared when the scan finishes
            label               INTEGER,  -- 0 spoofed 1 bonafide 2 inconclusive
            spoofed_probability REAL,
            language            TEXT,
            speakers            INTEGER,
            transcript          TEXT,     -- a snippet, only if the guild allows storing it
            detail              BLOB,     -- segments + provider label, JSON (zlib when long)
            error_kind          TEXT,
            error_message       TEXT,
            reused_from         INTEGER,
            review              INTEGER,  -- 0 confirmed 1 false_positive
            reviewed_by         INTEGER,
            reviewed_at         INTEGER,
            review_note         TEXT,
            reply_message_id    INTEGER
        )
        """,
        """
        CREATE TRIGGER scans_allocate_case AFTER INSERT ON scans
        BEGIN
            INSERT INTO guild_counters (guild_id, last_case)
            VALUES (NEW.guild_id, NEW.case_number)
            ON CONFLICT (guild_id) DO UPDATE
                SET last_case = max(last_case, excluded.last_case);
        END
        """,
        # recent, case lookup, and the uniqueness of case numbers.
        "CREATE UNIQUE INDEX scans_case ON scans (guild_id, case_number)",
        # by_author; partial because CLI and DM scans have no author.
        """
        CREATE INDEX scans_author ON scans (guild_id, author_id, case_number)
        WHERE author_id IS NOT NULL
        """,
        # Idempotency: one scan per message attachment and trigger. NULL ids never collide.
        """
        CREATE UNIQUE INDEX scans_message
        ON scans (guild_id, message_id, attachment_id, scan_trigger)
        WHERE message_id IS NOT NULL AND attachment_id IS NOT NULL
        """,
        # Time windows: flagged, stats, export, count_scans, purges. The trailing columns let
        # those queries filter and count from the index alone, touching the table only for
        # the rows they return.
        """
        CREATE INDEX scans_time ON scans
        (guild_id, created_at, case_number, status, label, spoofed_probability, channel_id)
        """,
        # Verdict reuse: the newest successful scan of the same bytes by the same provider.
        # Eight bytes of the digest find it (the row holds all 32) at a quarter of the size.
        """
        CREATE INDEX scans_reuse ON scans (substr(sha256, 1, 8), provider)
        WHERE status = 2
        """,
        # Scans to resume after a restart (a handful at any time).
        "CREATE INDEX scans_unfinished ON scans (status) WHERE status < 2",
        # Provider errors for stats (a few percent of rows).
        """
        CREATE INDEX scans_errors ON scans (guild_id, created_at, error_kind)
        WHERE error_kind IS NOT NULL
        """,
        """
        CREATE TABLE guild_settings (
            guild_id   INTEGER PRIMARY KEY,
            config     TEXT NOT NULL,  -- GuildConfig as JSON
            updated_at INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE events (
            id       INTEGER PRIMARY KEY,
            guild_id INTEGER NOT NULL,
            at       INTEGER NOT NULL,
            actor    TEXT NOT NULL,
            action   TEXT NOT NULL,
            target   TEXT NOT NULL,
            reason   TEXT NOT NULL
        )
        """,
        "CREATE INDEX events_guild ON events (guild_id, id)",
    ),
)

_V2_RETENTION_AND_CASE_EVENTS = Migration(
    2,
    "retention_days as a column; events linked to case numbers",
    (
        # The retention purge runs over every guild; reading a column beats parsing JSON.
        # Backfilled from the JSON saved under version 1.
        """
        ALTER TABLE guild_settings
        ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 90
        """,
        """
        UPDATE guild_settings
        SET retention_days = coalesce(json_extract(config, '$.retention_days'), 90)
        """,
        # Moderator actions and reviews are shown with their case. Version 1 wrote the case
        # only into `target` as 'case <n>'; recover the number from there.
        "ALTER TABLE events ADD COLUMN case_number INTEGER",
        """
        UPDATE events
        SET case_number = CAST(substr(target, 6) AS INTEGER)
        WHERE target GLOB 'case [0-9]*'
        """,
        """
        CREATE INDEX events_case ON events (guild_id, case_number)
        WHERE case_number IS NOT NULL
        """,
    ),
)

_V3_DAILY_ROLLUPS = Migration(
    3,
    "daily rollups of outcomes and channels for stats; scans_time covers flagged authors",
    (
        # /audit stats over 30 days of a busy server counted ~50,000 index entries several
        # times over (see BENCHMARKS.md). Counts per guild and UTC day, kept by triggers
        # inside the statements that change a case, make whole days a lookup; only the
        # partial first day of a window is counted from the cases themselves.
        # A case counts as its label code (0 spoofed, 1 bonafide, 2 inconclusive), else 10
        # failed or 11 pending: the same expression in the backfill and every trigger.
        """
        CREATE TABLE daily_outcomes (
            guild_id INTEGER NOT NULL,
            day      INTEGER NOT NULL,  -- created_at / 86400
            outcome  INTEGER NOT NULL,
            cases    INTEGER NOT NULL,
            PRIMARY KEY (guild_id, day, outcome)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE daily_channels (
            guild_id   INTEGER NOT NULL,
            day        INTEGER NOT NULL,
            channel_id INTEGER NOT NULL,
            cases      INTEGER NOT NULL,
            PRIMARY KEY (guild_id, day, channel_id)
        ) WITHOUT ROWID
        """,
        """
        INSERT INTO daily_outcomes (guild_id, day, outcome, cases)
        SELECT guild_id, created_at / 86400,
               coalesce(label, CASE status WHEN 3 THEN 10 ELSE 11 END), count(*)
        FROM scans GROUP BY 1, 2, 3
        """,
        """
        INSERT INTO daily_channels (guild_id, day, channel_id, cases)
        SELECT guild_id, created_at / 86400, channel_id, count(*)
        FROM scans WHERE channel_id IS NOT NULL GROUP BY 1, 2, 3
        """,
        """
        CREATE TRIGGER scans_rollup_insert AFTER INSERT ON scans
        BEGIN
            INSERT INTO daily_outcomes (guild_id, day, outcome, cases)
            VALUES (
                NEW.guild_id, NEW.created_at / 86400,
                coalesce(NEW.label, CASE NEW.status WHEN 3 THEN 10 ELSE 11 END), 1
            )
            ON CONFLICT (guild_id, day, outcome) DO UPDATE SET cases = cases + 1;
            INSERT INTO daily_channels (guild_id, day, channel_id, cases)
            SELECT NEW.guild_id, NEW.created_at / 86400, NEW.channel_id, 1
            WHERE NEW.channel_id IS NOT NULL
            ON CONFLICT (guild_id, day, channel_id) DO UPDATE SET cases = cases + 1;
        END
        """,
        """
        CREATE TRIGGER scans_rollup_update AFTER UPDATE OF status, label ON scans
        WHEN coalesce(OLD.label, CASE OLD.status WHEN 3 THEN 10 ELSE 11 END)
            IS NOT coalesce(NEW.label, CASE NEW.status WHEN 3 THEN 10 ELSE 11 END)
        BEGIN
            UPDATE daily_outcomes SET cases = cases - 1
            WHERE guild_id = OLD.guild_id AND day = OLD.created_at / 86400
                AND outcome = coalesce(OLD.label, CASE OLD.status WHEN 3 THEN 10 ELSE 11 END);
            INSERT INTO daily_outcomes (guild_id, day, outcome, cases)
            VALUES (
                NEW.guild_id, NEW.created_at / 86400,
                coalesce(NEW.label, CASE NEW.status WHEN 3 THEN 10 ELSE 11 END), 1
            )
            ON CONFLICT (guild_id, day, outcome) DO UPDATE SET cases = cases + 1;
        END
        """,
        """
        CREATE TRIGGER scans_rollup_delete AFTER DELETE ON scans
        BEGIN
            UPDATE daily_outcomes SET cases = cases - 1
            WHERE guild_id = OLD.guild_id AND day = OLD.created_at / 86400
                AND outcome = coalesce(OLD.label, CASE OLD.status WHEN 3 THEN 10 ELSE 11 END);
            UPDATE daily_channels SET cases = cases - 1
            WHERE guild_id = OLD.guild_id AND day = OLD.created_at / 86400
                AND channel_id = OLD.channel_id;
        END
        """,
        # Top flagged members read the author of every flagged case in the window; with
        # author_id in the index that is an index scan instead of a table lookup per case.
        # Channels are no longer needed here (daily_channels counts them).
        "DROP INDEX scans_time",
        """
        CREATE INDEX scans_time ON scans
        (guild_id, created_at, case_number, status, label, spoofed_probability, author_id)
        """,
    ),
)

_V4_CLAIMS_AND_COOLDOWNS = Migration(
    4,
    "submission claims (one provider submission per file) and cooldowns in the database",
    (
        # The scan that inserts (or takes over from a finished scan) the row for a file and
        # provider submits it; other scans of the same bytes wait for its verdict.
        """
        CREATE TABLE submission_claims (
            sha256     BLOB NOT NULL,
            provider   INTEGER NOT NULL,
            scan_id    INTEGER NOT NULL,
            claimed_at INTEGER NOT NULL,
            PRIMARY KEY (sha256, provider)
        ) WITHOUT ROWID
        """,
        # Uses of rate-limited commands, per bucket and key, pruned as they age out.
        """
        CREATE TABLE cooldown_uses (
            bucket TEXT NOT NULL,
            key    INTEGER NOT NULL,
            at     REAL NOT NULL
        )
        """,
        "CREATE INDEX cooldown_uses_key ON cooldown_uses (bucket, key, at)",
    ),
)

_V5_PUBLIC_REPLIES = Migration(
    5,
    "guild settings: public replies all|flagged|never replace the bona fide reply switch",
    (
        # A guild that turned bona fide replies off keeps its quiet channel (`flagged`); every
        # other guild keeps replying to every file (`all`). json_extract reads false as 0.
        """
        UPDATE guild_settings
        SET config = json_set(
            json_remove(config, '$.reply_bonafide'),
            '$.public_replies',
            CASE WHEN json_extract(config, '$.reply_bonafide') = 0 THEN 'flagged' ELSE 'all' END
        )
        WHERE json_extract(config, '$.public_replies') IS NULL
        """,
    ),
)

_V6_REVIEW_OUTCOMES = Migration(
    6,
    "index of reviewed cases for /audit stats review outcomes by probability band",
    (
        # Reviewed cases are a small share of all cases; `/audit stats` counts them per
        # probability band and decision from this partial index alone.
        """
        CREATE INDEX scans_reviewed ON scans
        (guild_id, created_at, review, spoofed_probability)
        WHERE review IS NOT NULL
        """,
    ),
)

_V7_GENERATOR = Migration(
    7,
    "the likely generator a provider named, searchable per guild",
    (
        # A short product name ("elevenlabs") or NULL; most cases have none, so the index
        # holds only those that do (/audit flagged generator:...).
        "ALTER TABLE scans ADD COLUMN generator TEXT",
        """
        CREATE INDEX scans_generator ON scans (guild_id, generator, created_at)
        WHERE generator IS NOT NULL
        """,
    ),
)

_V8_SECOND_OPINIONS = Migration(
    8,
    "second opinions: a case may name the case whose file it judges with the other "
    "provider; the kind of fraud Resemble named, searchable per guild",
    (
        # The first case's number in the same guild, or NULL (most cases); indexed where set,
        # so /audit case finds a case's second opinions at once.
        "ALTER TABLE scans ADD COLUMN second_opinion_of INTEGER",
        """
        CREATE INDEX scans_second_opinion ON scans (guild_id, second_opinion_of)
        WHERE second_opinion_of IS NOT NULL
        """,
        # Resemble intelligence's `fraud.type` (a closed vocabulary, "vishing"), or NULL;
        # /audit flagged fraud:... Earlier cases keep it only inside `detail` (compressed,
        # not searchable): they are not backfilled.
        "ALTER TABLE scans ADD COLUMN fraud_type TEXT",
        """
        CREATE INDEX scans_fraud_type ON scans (guild_id, fraud_type, created_at)
        WHERE fraud_type IS NOT NULL
        """,
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    _V1_INITIAL,
    _V2_RETENTION_AND_CASE_EVENTS,
    _V3_DAILY_ROLLUPS,
    _V4_CLAIMS_AND_COOLDOWNS,
    _V5_PUBLIC_REPLIES,
    _V6_REVIEW_OUTCOMES,
    _V7_GENERATOR,
    _V8_SECOND_OPINIONS,
)
LATEST_VERSION = MIGRATIONS[-1].version


class SchemaTooNew(RuntimeError):
    """The database was written by a newer Spoofwatch; refusing to guess at its schema."""


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection,
    *,
    target: int = LATEST_VERSION,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> int:
    """Apply the migrations above the database's version up to `target`; return the version.

    Runs in the writer thread at start-up. The connection must be in autocommit mode
    (`isolation_level=None`): each migration is wrapped in `BEGIN IMMEDIATE`, which also
    makes a second process starting at the same moment wait instead of migrating twice.
    """
    current = schema_version(conn)
    if current > LATEST_VERSION:
        raise SchemaTooNew(
            f"The database is at schema version {current}, newer than this Spoofwatch "
            f"understands ({LATEST_VERSION}). Upgrade Spoofwatch."
        )
    for migration in migrations:
        if migration.version <= current or migration.version > target:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            if schema_version(conn) >= migration.version:
                conn.execute("ROLLBACK")
                current = schema_version(conn)
                continue
            for statement in migration.statements:
                conn.execute(statement)
            # PRAGMA takes no parameters; the value is our own integer constant.
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # some errors already rolled the transaction back
                conn.execute("ROLLBACK")
            raise
        log.info(
            "audit log schema migrated: actor=startup target=version %d reason=%s",
            migration.version,
            migration.description,
        )
        current = migration.version
    return current
