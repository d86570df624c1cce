#!/usr/bin/env python3
"""Benchmark: all 200 statements of a period issued as signed PDFs on a real Celery worker.

Sets up, in PostgreSQL (`--database`, dropped and made afresh) with a temporary media
folder and a test CA, the tests' hand-computed October (tests/chargeback/close_world.py)
with search's statement (CC-110) grown by `--lines` charge lines and signed off, then
copies it, lines and feature counts, to `--statements` - 1 more cost centers, each copy
signed off with its own SHA-256 (statements built directly: building 200 realistic
statements from a ledger is bench/close's job, and its world must stay in draft).

Then it starts a worker of the project's Celery app (`-A chargeback`, prefork,
`--concurrency`, `--max-tasks-per-child` when given) on Redis `--broker` and a queue of
its own, queues `statement_pdf_issue_task(id, force=True)` for every statement, and
measures the wall time from queueing to the last PDF ready, while sampling every second
the VmRSS (/proc/<pid>/status) of the worker's processes. Memory flat means no growth
trend: it prints the children's RSS over the run and its slope (MB per 100 PDFs).
PASS/MISS against the target: all 200 in under 2 minutes.

Run from the repository root (PostgreSQL and Redis up):
  .venv/bin/python bench/statement_pdf/worker.py [--statements 200] [--lines 100]
      [--concurrency 2] [--max-tasks-per-child N] [--broker redis://127.0.0.1:6379/7]
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])  # run with the project's venv
sys.path[:0] = [str(ROOT)]

TARGET_SECONDS = 120.0
PASSPHRASE = "bench-signing-passphrase"
QUEUE = "bench-statement-pdf"


def _environment(folder: Path, database: str, broker: str) -> dict:
    env = {
        "DJANGO_SETTINGS_MODULE": "chargeback.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "DATABASE_CONN_MAX_AGE": "0",
        "CHARGEBACK_MEDIA_ROOT": str(folder / "media"),
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": "",
        "CHARGEBACK_STATEMENT_PDF_ON_APPROVAL": "false",  # the bench queues the PDFs itself
        "CHARGEBACK_SIGNING_P12": str(folder / "signer.p12"),
        "CHARGEBACK_SIGNING_CA": str(folder / "ca.pem"),
        "CHARGEBACK_SIGNING_PASSPHRASE": PASSPHRASE,
        "CHARGEBACK_UNALLOCATED_OWNER": "CC-100",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return env


def _database_fresh(database: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{database}"')


def _statements(folder: Path, count: int, lines: int) -> list[int]:
    """`count` signed-off statements of the month: CC-110 grown and its copies."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from allocation.models import CostCenter
    from chargeback.models import Statement, StatementFeature
    from chargeback.services.statements import statement_content_hash
    from tests.chargeback.close_world import close_world
    from tests.chargeback.statement_pdf_world import approved_statement

    world = close_world(folder, get_user_model())
    source = approved_statement(world, "CC-110", extra_lines=lines)
    source_lines = list(source.lines.all())
    source_features = list(StatementFeature.objects.filter(statement=source))
    center = source.cost_center
    ids = [source.pk]
    with transaction.atomic():
        for number in range(1, count):
            copy_center = CostCenter.objects.get(pk=center.pk)
            copy_center.pk, copy_center.code, copy_center.name = None, f"CC-B{number:03d}", f"Bench center {number}"
            copy_center.save()
            statement = Statement.objects.get(pk=source.pk)
            signed = {field: getattr(statement, field) for field in ("status", "approved_by_id", "approved_at")}
            # In review while its lines go in (a signed-off statement's lines are frozen), then signed off.
            statement.pk, statement.cost_center, statement.status = None, copy_center, "in_review"
            statement.save()
            for line in source_lines:
                line.pk, line.statement = None, statement
            type(source_lines[0]).objects.bulk_create(source_lines)
            for feature in source_features:
                feature.pk, feature.statement = None, statement
            StatementFeature.objects.bulk_create(source_features)
            for field, value in signed.items():
                setattr(statement, field, value)
            statement.content_hash = statement_content_hash(statement)
            statement.save(update_fields=[*signed, "content_hash"])
            ids.append(statement.pk)
    return ids


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss_mb(pid: int) -> float | None:
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) / 1024
    except OSError:
        return None
    return None


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statements", type=int, default=200)
    parser.add_argument("--lines", type=int, default=100, help="charge lines added to each statement")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-tasks-per-child", type=int, default=0, help="0: Celery's default (never recycled)")
    parser.add_argument("--database", default="chargeback_bench_pdfspeed")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/7")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-statement-pdf-worker-") as tmp:
        folder = Path(tmp)
        env = _environment(folder, args.database, args.broker)
        _database_fresh(args.database)
        import django

        django.setup()
        from django.core.management import call_command

        from chargeback.celery_app import app
        from chargeback.models import StatementPdf
        from chargeback.services.signing import signing_certificate_make
        from chargeback.tasks import statement_pdf_issue_task

        print(f"setting up: {args.database}, {args.statements} statements of ~{args.lines + 10} lines ...", flush=True)
        call_command("migrate", verbosity=0)
        signing_certificate_make(
            organization="Bench Org", ca_path=folder / "ca.pem", p12_path=folder / "signer.p12", passphrase=PASSPHRASE
        )
        ids = _statements(folder, args.statements, args.lines)

        command = [str(ROOT / ".venv" / "bin" / "celery"), "-A", "chargeback", "worker", "--pool=prefork"]
        command += [
            f"--concurrency={args.concurrency}",
            "-Q",
            QUEUE,
            "-n",
            f"{QUEUE}-{os.getpid()}@%h",
            "-l",
            "warning",
        ]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        if args.max_tasks_per_child:
            command.append(f"--max-tasks-per-child={args.max_tasks_per_child}")
        log_path = folder / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            hostname = f"{QUEUE}-{os.getpid()}@{os.uname().nodename}"
            deadline = time.monotonic() + 60
            while not app.control.ping(destination=[hostname], timeout=1.0):
                if worker.poll() is not None or time.monotonic() > deadline:
                    print(log_path.read_text()[-3000:])
                    return 2
            time.sleep(2)  # the pool's children forked and idle
            idle = {pid: _rss_mb(pid) for pid in _children(worker.pid)}
            print(f"worker {worker.pid} up, children {sorted(idle)}; idle RSS (MB) {idle}", flush=True)

            samples: list[tuple[float, int, float]] = []  # seconds, PDFs ready, children's mean RSS
            started = time.perf_counter()
            for statement_id in ids:
                statement_pdf_issue_task.apply_async(args=[statement_id], kwargs={"force": True}, queue=QUEUE)
            queued = time.perf_counter() - started
            ready = failed = 0
            peak_children: dict[int, float] = {}
            while ready + failed < len(ids):
                time.sleep(1)
                done = dict(
                    StatementPdf.objects.filter(statement_id__in=ids)
                    .values_list("status")
                    .annotate(n=django.db.models.Count("id"))
                    .values_list("status", "n")
                )
                ready, failed = done.get("ready", 0), done.get("failed", 0)
                rss = [value for pid in _children(worker.pid) if (value := _rss_mb(pid)) is not None]
                for pid in _children(worker.pid):
                    peak_children[pid] = max(peak_children.get(pid, 0), _rss_mb(pid) or 0)
                samples.append((time.perf_counter() - started, ready, statistics.fmean(rss) if rss else 0.0))
                if worker.poll() is not None or time.perf_counter() - started > 30 * TARGET_SECONDS:
                    break
            wall = time.perf_counter() - started
            parent_rss = _rss_mb(worker.pid)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()

        pages = list(
            StatementPdf.objects.filter(statement_id__in=ids, status="ready").values_list("page_count", flat=True)
        )
        errors = list(
            StatementPdf.objects.filter(statement_id__in=ids, status="failed").values_list("error", flat=True)[:3]
        )

    print()
    print(f"{len(ids)} statements queued in {queued:.2f} s; {ready} ready, {failed} failed {errors if errors else ''}")
    if pages:
        print(f"pages: median {statistics.median(pages):.0f}, {sum(pages)} in all")
    print(
        f"wall, queueing to the last PDF ready: {wall:.1f} s "
        f"({wall / max(ready, 1):.2f} s a PDF on {args.concurrency} processes)"
    )
    print("children's mean RSS (MB) by PDFs ready:")
    marks = sorted({round(len(ids) * share) for share in (0, 0.1, 0.25, 0.5, 0.75, 1.0)})
    for mark in marks:
        at = next((s for s in samples if s[1] >= mark), samples[-1])
        print(f"  {at[1]:>4} ready at {at[0]:6.1f} s: {at[2]:6.0f}")
    # The trend past the first tenth (fonts, templates and the signer's key loaded once).
    steady = [(s[1], s[2]) for s in samples if s[1] >= len(ids) / 10]
    slope = 100 * _slope(steady)
    print(
        f"RSS trend after the first tenth: {slope:+.1f} MB per 100 PDFs; peak per child (MB): "
        f"{', '.join(f'{v:.0f}' for v in peak_children.values())}; parent {parent_rss or 0:.0f}"
    )
    ok = ready == len(ids) and wall < TARGET_SECONDS
    verdict = "PASS" if ok else "MISS"
    print(
        f"{verdict}: {ready} of {len(ids)} PDFs in {wall:.1f} s (< {TARGET_SECONDS:.0f} s); "
        f"ratio {wall / TARGET_SECONDS:.2f}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
