#!/usr/bin/env python3
"""Benchmark: the ERP pulling a period's journal entries through the API, on PostgreSQL
(issue 13).

A period's journal entries for 200 cost centers, 50 lines each (49 debits to the cost
center's expense account by modality, one credit to the provider clearing account), are
written straight into the tables (bulk inserts; no allocation world is needed to read
them). Then, with Django's test Client and a real ERP service token, every entry is
pulled through `GET /api/v1/journal-entries?period=...&page_size=500`, following the
cursor to the end, --pulls times after --warmups: each page's time is the whole request
in this process (token authentication, URL rule, FilterSet, keyset query, lines query,
serialization, JSON rendering). It prints the median and slowest page, the target (a
median page under 50 ms) and the ratio figure/target with PASS/MISS, and checks that a
pull returned every entry once with balanced lines.

Run from the repository root:  .venv/bin/python bench/journals/run.py
    [--centers 200] [--lines 50] [--entries-per-center 1] [--pulls 20] [--warmups 3] [--rebuild]
Database: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/chargeback_bench_journals);
created if missing, migrated; its name must contain "bench" (the period's entries are
replaced). See bench/README.md.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])  # run with the project's venv
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/chargeback_bench_journals"
PERIOD = "2026-10"
TARGET_PAGE_MS = 50.0
PAGE_SIZE = 500
MODALITIES = ["text", "image", "audio", "embedding", "realtime", "batch", "video"]


def database_create(url: str) -> None:
    import dj_database_url
    import psycopg
    from psycopg import sql

    cfg = dj_database_url.parse(url)
    if "bench" not in cfg["NAME"]:
        sys.exit(f"database {cfg['NAME']!r}: its name must contain 'bench' (the period's entries are replaced)")
    server = {key: cfg.get(key.upper()) or None for key in ("user", "password", "host", "port")}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [cfg["NAME"]]).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(cfg["NAME"])))


def world_build(*, centers: int, lines: int, per_center: int, rebuild: bool) -> int:
    """The period's entries, unless already there in this shape. Returns the entry count."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from allocation.models import AllocationRun, CostCenter, MappingVersion, RatingRun
    from chargeback.models import JournalEntry, JournalLine, Statement
    from chargeback.selectors.journals import journal_lines_document

    wanted = centers * per_center
    have = JournalEntry.objects.filter(period=PERIOD)
    if (
        not rebuild
        and have.count() == wanted
        and JournalLine.objects.filter(entry__period=PERIOD).count() == (wanted * lines)
    ):
        return wanted
    print(f"writing {wanted:,} entries of {lines} lines for {PERIOD} ...", flush=True)
    started = time.perf_counter()
    with transaction.atomic():
        JournalLine.objects.filter(entry__period=PERIOD).delete()
        JournalEntry.objects.filter(period=PERIOD).delete()
        Statement.objects.filter(period=PERIOD).delete()
        codes = [f"BJ-{n:04d}" for n in range(1, centers + 1)]
        CostCenter.objects.bulk_create(
            [
                CostCenter(
                    code=code,
                    name=f"Bench center {code}",
                    owner="bench",
                    gl_expense_account=f"6{n:03d}",
                    gl_recovery_account=f"7{n:03d}",
                    active_from="2026-01-01",
                )
                for n, code in enumerate(codes, start=1)
            ],
            ignore_conflicts=True,
        )
        by_code = {c.code: c for c in CostCenter.objects.filter(code__in=codes)}
        now = timezone.now()
        signer, _ = get_user_model().objects.get_or_create(username="bench-approver")
        version = MappingVersion.objects.filter(name="bench journals").first() or MappingVersion.objects.create(
            number=(MappingVersion.objects.order_by("-number").values_list("number", flat=True).first() or 0) + 1,
            name="bench journals",
            status="signed",
            effective_from="2026-01-01",
            signed_at=now,
            signed_by=signer,
            content_hash="0" * 64,
        )
        rating = RatingRun.objects.create(period=PERIOD, status="completed")
        run = AllocationRun.objects.create(
            period=PERIOD,
            mapping_version=version,
            rating_run=rating,
            fingerprint="0" * 64,
            tolerance=Decimal("0.02"),
            invoice_total=0,
            allocated=0,
            unallocated=0,
        )
        statements = Statement.objects.bulk_create(
            [
                Statement(
                    period=PERIOD,
                    cost_center=by_code[code],
                    run=run,
                    status="approved",
                    built_at=now,
                    approved_at=now,
                    approved_by=signer,
                    content_hash="0" * 64,
                )
                for code in codes
            ]
        )
        entries = [
            JournalEntry(
                statement=statement,
                cost_center=statement.cost_center,
                kind="chargeback",
                company="ACME-US",
                period=PERIOD,
                posting_date="2026-10-31",
                currency="USD",
                memo=f"AI chargeback {PERIOD}, {statement.cost_center.code}",
                external_id=f"CB-{PERIOD}-{statement.cost_center.code}-chargeback-{k}",
            )
            for statement in statements
            for k in range(1, per_center + 1)
        ]
        rows = []
        for index, entry in enumerate(entries):
            center = entry.cost_center
            debits = [1000 + (index * 7 + n * 13) % 90000 for n in range(lines - 1)]
            for n, cents in enumerate(debits, start=1):
                modality = MODALITIES[n % len(MODALITIES)]
                rows.append(
                    JournalLine(
                        entry=entry,
                        line_no=n,
                        gl_account=center.gl_expense_account,
                        cost_center=center,
                        debit_cents=cents,
                        modality=modality,
                        description=f"AI spend, {modality} #{n}",
                    )
                )
            rows.append(
                JournalLine(
                    entry=entry,
                    line_no=lines,
                    gl_account="2190",
                    credit_cents=sum(debits),
                    description="Provider clearing",
                )
            )
            # As the services write an entry: with its lines' JSON, the API's answer.
            entry.lines_json, entry.total_cents = journal_lines_document(
                (
                    x.line_no,
                    x.gl_account,
                    center.code if x.cost_center else None,
                    x.debit_cents,
                    x.credit_cents,
                    x.modality,
                    x.description,
                )
                for x in rows[-lines:]
            )
        JournalEntry.objects.bulk_create(entries)
        JournalLine.objects.bulk_create(rows, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE chargeback_journalentry; ANALYZE chargeback_journalline")
    print(f"written in {time.perf_counter() - started:.1f} s", flush=True)
    return wanted


def pull(client, headers: dict) -> tuple[list[float], list[dict]]:
    url = f"/api/v1/journal-entries?period={PERIOD}&page_size={PAGE_SIZE}"
    times, entries = [], []
    while url:
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)  # the server's part; the client's parse is not
        body = response.json()
        assert response.status_code == 200, response.content[:500]
        entries += body["results"]
        url = body["next"]
    return times, entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centers", type=int, default=200)
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--entries-per-center", type=int, default=1)
    parser.add_argument("--pulls", type=int, default=20)
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    database_create(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargeback.settings")
    os.environ.setdefault("DJANGO_DEBUG", "0")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from allocation.services.access import api_token_issue

    call_command("migrate", verbosity=0)
    count = world_build(
        centers=args.centers, lines=args.lines, per_center=args.entries_per_center, rebuild=args.rebuild
    )
    token = api_token_issue(name="bench erp", scope="erp").secret
    headers = {"Authorization": f"Bearer {token}"}
    client = Client()

    for _ in range(args.warmups):
        pull(client, headers)
    pages: list[float] = []
    pulls: list[float] = []
    for _ in range(args.pulls):
        times, entries = pull(client, headers)
        pages += times
        pulls.append(sum(times))
    assert len(entries) == len({e["id"] for e in entries}) == count, (len(entries), count)
    for entry in entries:
        assert sum(line["debit_cents"] for line in entry["lines"]) == sum(
            line["credit_cents"] for line in entry["lines"]
        )
        assert len(entry["lines"]) == args.lines

    median = statistics.median(pages)
    ratio = median / TARGET_PAGE_MS
    print()
    print(f"PostgreSQL {connection.pg_version // 10000}, database {connection.settings_dict['NAME']}")
    print(
        f"period {PERIOD}: {count:,} entries x {args.lines} lines = {count * args.lines:,} lines; "
        f"pages of {PAGE_SIZE}: {len(pages) // args.pulls} a pull; {args.pulls} pulls after {args.warmups} warm-ups"
    )
    print(f"page time: median {median:.1f} ms, min {min(pages):.1f} ms, max {max(pages):.1f} ms")
    print(f"whole pull: median {statistics.median(pulls):.1f} ms")
    print(f"target: median page < {TARGET_PAGE_MS:.0f} ms; ratio {ratio:.2f} -> {'PASS' if ratio < 1 else 'MISS'}")


if __name__ == "__main__":
    main()
