#!/usr/bin/env python3
"""Benchmark: the monthly close's speed on PostgreSQL (issue 11).

On bench/allocate's world (200 cost centers, N ledger lines of one month, built once
and kept; see bench/allocate/world.py) with the month allocated, it times:

* `statements_build(period=...)`: all 200 statements of the month, median of
  --builds (default 3), the period's statements deleted before each build (the
  last build stays, for the pages);
* with Django's test Client, logged in (server time: the whole request through
  the middleware, the view and the template, in this process; median of
  --requests after --warmups):
  - the dashboard `/?period=...` as a finance approver;
  - a statement page `/statements/<id>/`, as a finance approver and as a member
    of the statement's cost center (the statement with the most lines);
  - the drill-down `/statements/<id>/lines/<line>/` of the statement's line with
    the most calls behind it, of one with the fewest, and the first with
    `?trace=` (a trace of its first page) and its second page (`?after=`);

and prints each figure, its target, the ratio figure/target and PASS/MISS
(targets: each page under 150 ms median, building all statements under 10 s).
`--profile` then shows the SQL of each page with EXPLAIN ANALYZE of its slowest
statements, and a profile of one request of each page and of one build
(pyinstrument when importable, else cProfile).

Run from the repository root:  .venv/bin/python bench/close/run.py
    [--lines N] [--builds B] [--requests R] [--warmups W] [--profile] [--rebuild]
See bench/README.md.
"""

import argparse
import importlib.util
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


def _allocate_bench():
    """bench/allocate/run.py as a module: its world, databases and prepare step are reused."""
    spec = importlib.util.spec_from_file_location("bench_allocate_run", ROOT / "bench" / "allocate" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


allocate = _allocate_bench()
PERIOD = allocate.PERIOD

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/chargeback_bench_close"
TARGET_PAGE_MS = 150.0
TARGET_BUILD_S = 10.0
APPROVER = "bench-close-approver"
MEMBER = "bench-close-member"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --------------------------------------------------------------------------- set-up


def django_setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargeback.settings")
    import django

    django.setup()


def statements_delete() -> None:
    """The period's statements gone (drafts: nothing signed is touched), so that a build
    writes all of them."""
    from chargeback.choices import SIGNED_STATUSES
    from chargeback.models import Statement

    statements = Statement.objects.filter(period=PERIOD)
    if statements.filter(status__in=SIGNED_STATUSES).exists():
        sys.exit(f"{PERIOD} has signed statements in this database: rebuild the world (--rebuild)")
    statements.delete()


def people(cost_center_id: int):
    """A finance approver, and a team member of the cost center."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from allocation.access import FINANCE_APPROVER, TEAM_MEMBER
    from allocation.models import CostCenterMembership

    model = get_user_model()
    approver, _ = model.objects.get_or_create(username=APPROVER, defaults={"email": "approver@bench.invalid"})
    approver.groups.add(Group.objects.get_or_create(name=FINANCE_APPROVER)[0])
    member, _ = model.objects.get_or_create(username=MEMBER, defaults={"email": "member@bench.invalid"})
    member.groups.add(Group.objects.get_or_create(name=TEAM_MEMBER)[0])
    CostCenterMembership.objects.filter(user=member).exclude(cost_center_id=cost_center_id).delete()
    CostCenterMembership.objects.get_or_create(user=member, cost_center_id=cost_center_id)
    return approver, member


def tables_analyze() -> None:
    """VACUUM ANALYZE the tables the pages read, as autovacuum would on a live server
    (this machine's PostgreSQL runs without it): planned on no statistics, ~20,000
    allocation lines looked like 10 and were sorted where they should be hashed."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in (
            "allocation_allocationline",
            "chargeback_statement",
            "chargeback_statementline",
            "chargeback_statementfeature",
            "chargeback_ledgerfeaturecount",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")


def client_for(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


# --------------------------------------------------------------------------- timing


def time_count() -> float:
    """Requests and traces per feature counted anew from the month's ledger: what the
    first build after the month's lines landed pays (here one batch of N lines; a
    day's batch, its own lines), the later builds reading the kept counts."""
    from chargeback.models import LedgerFeatureCount, LedgerFeatureCountMark
    from chargeback.services.feature_counts import feature_counts_update
    from pricing.periods import Period

    LedgerFeatureCount.objects.filter(period=PERIOD).delete()
    LedgerFeatureCountMark.objects.filter(period=PERIOD).delete()
    started = time.perf_counter()
    kept = feature_counts_update(period=Period.parse(PERIOD))
    seconds = time.perf_counter() - started
    print(f"  requests and traces per feature counted from the month's ledger: {seconds:.2f} s ({kept:,} rows kept)")
    return seconds


def time_builds(builds: int) -> list[float]:
    from chargeback.services.statements import statements_build
    from pricing.periods import Period

    seconds = []
    for i in range(1, builds + 1):
        statements_delete()
        started = time.perf_counter()
        built = statements_build(period=Period.parse(PERIOD))
        seconds.append(time.perf_counter() - started)
        print(f"  build {i}: {seconds[-1]:6.2f} s  ({built.built} statements built)", flush=True)
    return seconds


class QueryLog:
    """The SQL statements run inside it, with their times, from a database execute
    wrapper (Django's query log is reset by every request it would capture)."""

    def __init__(self):
        self.queries: list[tuple[float, str, object]] = []
        self.cpu_ms = 0.0  # median CPU time of this process a request, set by time_page

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((time.perf_counter() - started, sql, params))

    def __enter__(self):
        from django.db import connection

        self._wrapped = connection.execute_wrapper(self)
        self._wrapped.__enter__()
        return self

    def __exit__(self, *exc):
        self._wrapped.__exit__(*exc)


def time_page(client, url: str, *, warmups: int, requests: int) -> tuple[list[float], QueryLog]:
    """Milliseconds of each timed request, and the SQL statements of one more request."""
    for _ in range(warmups):
        response = client.get(url)
        if response.status_code != 200:
            sys.exit(f"{url}: HTTP {response.status_code}")
    timings, cpu = [], []
    for _ in range(requests):
        started, cpu_started = time.perf_counter(), time.process_time()
        client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    with QueryLog() as log:
        client.get(url)
    log.cpu_ms = statistics.median(cpu)
    return timings, log


def pages(approver, member) -> list[tuple[str, object, str]]:
    """(title, client, URL) of every page timed."""
    from django.db.models import Count
    from django.urls import reverse

    from chargeback.choices import StatementLineKind
    from chargeback.models import Statement
    from chargeback.selectors.statements import statement_calls

    statement = Statement.objects.filter(period=PERIOD).order_by("-line_count", "pk").first()
    charges = statement.lines.filter(kind=StatementLineKind.CHARGE).exclude(provider="")
    biggest = charges.order_by("-line_count", "pk").first()
    smallest = charges.filter(line_count__gt=0).order_by("line_count", "pk").first()
    first = statement_calls(line=biggest, limit=50)
    trace = next(call.trace_id for call in first.calls if call.trace_id)
    as_approver, as_member = client_for(approver), client_for(member)
    page_url = reverse("statement", args=[statement.pk])
    line_url = reverse("statement-line", args=[statement.pk, biggest.pk])
    small_url = reverse("statement-line", args=[statement.pk, smallest.pk])
    print(
        f"  statement #{statement.pk} ({statement.cost_center.code}, {statement.line_count} lines, "
        f"{Statement.objects.filter(period=PERIOD).aggregate(n=Count('pk'))['n']} statements); "
        f"drill-down lines #{biggest.pk} ({biggest.line_count:,} ledger lines: {biggest.provider}/{biggest.model} "
        f"{biggest.team} {biggest.feature} {biggest.environment} {biggest.modality}) and #{smallest.pk} "
        f"({smallest.line_count:,}); trace {trace}",
        flush=True,
    )
    return [
        ("dashboard, finance approver", as_approver, f"/?period={PERIOD}"),
        ("statement page, finance approver", as_approver, page_url),
        ("statement page, team member", as_member, page_url),
        ("drill-down, the line with the most calls", as_approver, line_url),
        ("drill-down, its second page (?after=)", as_approver, f"{line_url}?after={first.next_cursor}"),
        ("drill-down, the line with the fewest calls", as_approver, small_url),
        ("drill-down with ?trace=", as_approver, f"{line_url}?trace={trace}"),
    ]


# --------------------------------------------------------------------------- profiling


def profile(page_list: list[tuple[str, object, str]]) -> None:
    """Each page's SQL (time, and EXPLAIN ANALYZE of the two slowest), then a profile of
    one request of each page and of one build."""
    from django.db import connection

    for title, client, url in page_list:
        with QueryLog() as log:
            client.get(url)
        captured = sorted(log.queries, key=lambda q: -q[0])
        total = sum(q[0] for q in captured)
        print(f"\n== {title}: {url}: {len(captured)} statements, {total * 1000:.1f} ms of SQL")
        for seconds, sql, params in captured[:3]:
            print(f"-- {seconds * 1000:.1f} ms: {sql[:600]}")
            if sql.lstrip().upper().startswith("SELECT"):
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                    print("\n".join(row[0] for row in cursor.fetchall()[:40]))
    try:
        sys.path.append("/tmp/close/pyi")  # a private install, if made (pip install --target)
        from pyinstrument import Profiler
    except ImportError:
        Profiler = None
    for title, client, url in page_list:
        print(f"\n== profile: {title}")
        _profiled(Profiler, lambda client=client, url=url: client.get(url))
    from chargeback.services.statements import statements_build
    from pricing.periods import Period

    statements_delete()
    print("\n== profile: statements_build")
    _profiled(Profiler, lambda: statements_build(period=Period.parse(PERIOD)))


def _profiled(Profiler, call) -> None:
    if Profiler is not None:
        profiler = Profiler(interval=0.0005)
        profiler.start()
        call()
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(call)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


# --------------------------------------------------------------------------- the benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000_000, help="ledger lines (default 10,000,000)")
    parser.add_argument("--builds", type=int, default=3, help="timed builds of all statements (default 3)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests of each page (default 20)")
    parser.add_argument("--warmups", type=int, default=3, help="untimed requests first (default 3)")
    parser.add_argument("--profile", action="store_true", help="then EXPLAIN ANALYZE and profile each page")
    parser.add_argument("--rebuild", action="store_true", help="build the world again even if built")
    args = parser.parse_args()
    base = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    if "bench" not in allocate.database_name(base):
        sys.exit(f"{base}: the benchmark empties the allocation tables; use a database name with 'bench' in it")
    url = allocate.database_url(base, args.lines)
    load = os.getloadavg()
    print(f"== {args.lines:,} ledger lines: database {allocate.database_name(url)}", flush=True)
    allocate.database_create(url)
    # bench/allocate's prepare: builds the world unless built, rates the month ahead and
    # makes sure it has a current allocation run (in a child process, as there).
    allocate.child(url, "prepare", str(args.lines), *(["rebuild"] if args.rebuild else []))
    django_setup(url)

    from chargeback.models import Statement

    print(f"\nbuilding all statements of {PERIOD} ({args.builds} times, the period's statements deleted before each):")
    count = time_count()
    builds = time_builds(args.builds)
    tables_analyze()
    statement = Statement.objects.filter(period=PERIOD).order_by("-line_count", "pk").first()
    approver, member = people(statement.cost_center_id)
    print(
        f"\npages (server time through Django's test Client; median of {args.requests} after {args.warmups} warm-ups):"
    )
    page_list = pages(approver, member)
    results = []
    for title, client, page_url in page_list:
        timings, log = time_page(client, page_url, warmups=args.warmups, requests=args.requests)
        results.append((title, timings, log))
        sql_ms = sum(q[0] for q in log.queries) * 1000
        print(
            f"  {title:44s} median {statistics.median(timings):7.1f} ms  (min {min(timings):.1f}, "
            f"max {max(timings):.1f}; Python CPU {log.cpu_ms:.1f} ms; one more: {len(log.queries)} SQL "
            f"statements, {sql_ms:.1f} ms)",
            flush=True,
        )
    build = statistics.median(builds)
    print(f"\nresults ({args.lines:,} ledger lines, period {PERIOD}):")
    print(f"  {'':44s} {'median':>10s} {'target':>10s} {'ratio':>6s}")
    print(
        f"  {'statements_build, all statements':44s} {build:8.2f} s {'< ' + str(int(TARGET_BUILD_S)) + ' s':>10s} "
        f"{build / TARGET_BUILD_S:6.2f}  {verdict(build < TARGET_BUILD_S)}   runs: "
        + ", ".join(f"{s:.2f}" for s in builds)
    )
    print(
        f"  {'(counting the month anew, once: see above)':44s} {count:8.2f} s {'':>10s} "
        f"{count / TARGET_BUILD_S:6.2f}  {verdict(count + build < TARGET_BUILD_S)} (with a build)"
    )
    for title, timings, _ in results:
        median = statistics.median(timings)
        print(
            f"  {title:44s} {median:7.1f} ms {'< ' + str(int(TARGET_PAGE_MS)) + ' ms':>10s} "
            f"{median / TARGET_PAGE_MS:6.2f}  {verdict(median < TARGET_PAGE_MS)}"
        )
    now = os.getloadavg()
    print(
        f"load average (1, 5, 15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start, "
        f"{now[0]:.1f} {now[1]:.1f} {now[2]:.1f} at the end; {os.cpu_count()} CPUs"
    )
    if args.profile:
        profile(page_list)


if __name__ == "__main__":
    main()
