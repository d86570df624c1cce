#!/usr/bin/env python3
"""Benchmark: a month's allocation run on PostgreSQL against a bare GROUP BY scan.

Builds (once, kept between runs) a company's month in a bench database per
ledger size (see world.py): 200 cost centers, 400 teams, 1,000 features, 5
providers, a signed mapping of 30 rules and 10 shared-cost pools, provider
invoices close to the rated cost, and N ledger lines generated in SQL. Then,
alternating and repeated, it times:

* the bare scan:      SELECT provider, unit, sum(quantity) FROM the ledger
                      WHERE occurred_at in the month GROUP BY 1, 2
* the allocation run: allocation_run_execute(period=...), in a fresh process
                      each time, so that its peak RSS (ru_maxrss) is its own;
                      each run supersedes the previous one; four kinds: the
                      month rated ahead (as rate_usage does nightly), after a
                      batch has landed since that rating, after a price
                      correction, and with no rating standing (the run rates
                      the whole month)

and prints medians, the ratio, the phases of the run (by wrapping the engine's
steps; SQL time by a database execute wrapper), peak memory at two ledger
sizes, and PASS/MISS against the targets (under 60 s, within 5x of the scan,
memory independent of the ledger's size).

Run from the repository root:  .venv/bin/python bench/allocate/run.py
    [--lines N] [--small-lines M] [--repeat R] [--profile] [--rebuild]
See bench/README.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])  # run with the project's venv
sys.path[:0] = [str(ROOT), str(HERE)]

from world import GENERATOR_VERSION, PERIOD, world_build, world_signature  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_allocate"
OUT = ROOT / "bench" / "out"  # git-ignored
TARGET_SECONDS = 60.0
TARGET_SCAN_RATIO = 5.0
MEMORY_SLACK = 1.25  # the run's memory at N lines within 25% (+10 MB) of at M lines
MEMORY_SLACK_MB = 10.0
SCAN_SQL = (
    "SELECT provider, unit, sum(quantity) FROM allocation_usageline "
    "WHERE occurred_at >= %s AND occurred_at < %s GROUP BY 1, 2"
)
MONTH = ("2026-10-01 00:00:00+00", "2026-11-01 00:00:00+00")
# The runs timed, each after its own set-up (see child_run): the month rated ahead; a
# batch landed since its rating; no rating standing.
KINDS = {
    "run": "rated ahead",
    "batch": "a batch since the rating",
    "prices": "new prices since",
    "full": "no rating stands",
}


# --------------------------------------------------------------------------- databases


def label(lines: int) -> str:
    if lines % 1_000_000 == 0:
        return f"{lines // 1_000_000}m"
    if lines % 1000 == 0:
        return f"{lines // 1000}k"
    return str(lines)


def database_url(base: str, lines: int) -> str:
    """One database per ledger size, so both stay built: bench_allocate_10m, bench_allocate_1m."""
    address, _, query = base.partition("?")
    return f"{address}_{label(lines)}" + (f"?{query}" if query else "")


def database_name(url: str) -> str:
    return url.partition("?")[0].rsplit("/", 1)[-1]


def database_create(url: str) -> None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = database_name(url)
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def time_scan(url: str) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(SCAN_SQL, MONTH).fetchall()
        return time.perf_counter() - started


def child(url: str, *args: str) -> dict | None:
    """Run this script in a fresh process on `url`, its output shown as it comes; a JSON line is its result."""
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="chargeback.settings", PYTHONUNBUFFERED="1")
    command = [sys.executable, __file__, "--child", *args]
    result = None
    with subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        for line in process.stdout:
            if line.startswith("{"):
                result = json.loads(line)
            else:
                print(line, end="", flush=True)
    if process.returncode:
        sys.exit(f"{' '.join(command[1:])} failed (exit status {process.returncode})")
    return result


# --------------------------------------------------------------------------- children (Django)


def django_setup() -> None:
    import django

    django.setup()


def child_prepare(lines: int, rebuild: bool = False) -> None:
    """Migrate; build the world unless built for these lines; drop older runs; make sure a
    run is current, so that each timed run supersedes one."""
    from django.core.management import call_command
    from django.db import connection

    from allocation.choices import AllocationRunStatus
    from allocation.models import AllocationRun, RatingRun, UsageBatch
    from allocation.services.runs.run import allocation_run_execute
    from pricing.periods import Period

    call_command("migrate", verbosity=0)
    if rebuild or not UsageBatch.objects.filter(source_name=world_signature(lines)).exists():
        print(f"building the world for {lines:,} lines in {connection.settings_dict['NAME']} ...", flush=True)
        world_build(lines=lines, out=OUT / f"allocate-{label(lines)}")
    current = AllocationRun.objects.filter(period=PERIOD, status=AllocationRunStatus.COMPLETED).first()
    if current is None:
        rate_ahead()
        started = time.perf_counter()
        allocation_run_execute(period=Period.parse(PERIOD))
        print(f"  first run (untimed, so that each timed run supersedes one): {time.perf_counter() - started:.1f} s")
        return
    # Earlier runs' rows would only bloat the tables the run writes and reads.
    older = AllocationRun.objects.exclude(pk=current.pk)
    if older.exists():
        older.update(superseded_by=None)
        older.delete()
        RatingRun.objects.filter(allocation_runs__isnull=True).delete()
        with connection.cursor() as cursor:
            for table in (
                "allocation_allocationline",
                "allocation_ratedusage",
                "allocation_ratingrule",
                "allocation_ratingsum",
                "allocation_ratingrequestcount",
            ):
                cursor.execute(f"VACUUM ANALYZE {table}")
    rate_ahead()


def rate_ahead() -> None:
    """The month rated ahead of its close, as `rate_usage` does nightly (a rating that
    still stands is kept as it is): the ledger's lines are rated when the close runs."""
    from allocation.models import RatingRun
    from allocation.services.runs.run import allocation_usage_rate
    from pricing.periods import Period

    newest = RatingRun.objects.order_by("-pk").values_list("pk", flat=True).first()
    started = time.perf_counter()
    if allocation_usage_rate(period=Period.parse(PERIOD)).pk != newest:
        print(f"  the month rated ahead (rate_usage): {time.perf_counter() - started:.1f} s")


class Phases:
    """Wall time of the engine's steps (self time: a step inside another counts once)
    and the SQL time within each, from a database execute wrapper."""

    def __init__(self):
        self.stack: list[list] = []
        self.wall: dict[str, float] = {}
        self.sql: dict[str, float] = {}
        self.queries: dict[str, int] = {}

    def wrap(self, name: str, function):
        import functools

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            self.stack.append([name, 0.0])
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                _, inner = self.stack.pop()
                self.wall[name] = self.wall.get(name, 0.0) + elapsed - inner
                if self.stack:
                    self.stack[-1][1] += elapsed

        return wrapper

    def execute(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            name = self.stack[-1][0] if self.stack else "other"
            self.sql[name] = self.sql.get(name, 0.0) + time.perf_counter() - started
            self.queries[name] = self.queries.get(name, 0) + 1


# Engine steps timed, in the order they run: (module attribute, phase name).
# (engine module, the name it calls, the phase): each step is timed where it is called.
PHASES = (
    ("engine", "usage_rate_kept", "rating: kept, extended or read anew"),
    ("engine", "ledger_groups", "pricing the kept sums by the tags"),
    ("engine", "charge_provider", "charging the groups (Python)"),
    ("engine", "request_counts", "requests driver (kept counts)"),
    ("engine", "provider_allocation_lines", "splitting invoices into lines"),
    ("split", "_invoice_parts", "invoice parts and pools"),
    ("split", "largest_remainder", "rounding to cents"),
    ("split", "_allocation_line", "allocation line objects"),
    ("engine", "reconcile_provider", "reconciliation"),
    ("engine", "run_fingerprint", "fingerprint"),
)
WRITE_PHASE = "writing allocation lines"
COMMIT_PHASE = "commit"
OTHER_PHASE = "other (reads, supersede, run row)"


def price_correction() -> None:
    """A contract price for one model's input, for the whole month, loaded as finance
    would at the close: a new version of the bench's contract book (one cent up each
    time), which cuts the month no finer than the books already do."""
    from decimal import Decimal

    from pricing.models import PriceBook
    from pricing.services.price_books import PriceRow, price_book_version_create

    book, _ = PriceBook.objects.get_or_create(
        code="bench-contract", defaults={"name": "bench/allocate contract", "kind": "contract"}
    )
    amount = Decimal("2.40") + Decimal("0.01") * book.versions.count()
    row = PriceRow("bench/allocate", "openai", "gpt-4.1", "input_token", amount, 1_000_000)
    price_book_version_create(book=book, rows=[row], source="bench/allocate: a price correction")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_run(kind: str = "run") -> None:
    """One timed allocation run; its figures as JSON on the last line. `kind` "batch": a
    usage batch (empty) lands first, so that the run extends the period's rating with
    the later batches' lines (it reads the month's ledger for them); "prices": a price
    correction is loaded first (`price_correction`), so that the run prices the kept
    sums at the new prices without reading the ledger's lines; "full": the
    period's ratings are marked as read while a batch was loading, so that none stands
    and the run rates the whole ledger itself."""
    import gc
    import resource

    from django.db import connection
    from django.db.models import Max

    from allocation.models import AllocationLine, RatingRun, UsageBatch
    from allocation.services.runs import engine, run, split
    from pricing.periods import Period

    if kind == "batch":
        UsageBatch.objects.create(
            source_format="csv", source_name="bench/allocate: a batch since the rating", status="completed"
        )
    elif kind == "prices":
        price_correction()
    elif kind == "full":
        RatingRun.objects.filter(period=PERIOD).update(ledger_settled=False)
    newest_rating = RatingRun.objects.aggregate(newest=Max("pk"))["newest"] or 0

    phases = Phases()
    modules = {"engine": engine, "split": split}
    for module_name, attribute, name in PHASES:
        module = modules[module_name]
        if hasattr(module, attribute):  # the engine's steps may be renamed; the rest shows as "other"
            setattr(module, attribute, phases.wrap(name, getattr(module, attribute)))
    counts = {}
    grouped = engine.ledger_groups

    def ledger_groups(**kwargs):
        result = grouped(**kwargs)
        counts["groups"] = sum(len(groups) for groups in result.values())
        return result

    engine.ledger_groups = ledger_groups
    manager = AllocationLine.objects  # the model's one manager instance: its attribute is what the engine calls
    bulk_create = manager.bulk_create

    def write_lines(objs, *args, **kwargs):
        counts["allocation_lines"] = len(objs)
        return bulk_create(objs, *args, **kwargs)

    manager.bulk_create = phases.wrap(WRITE_PHASE, write_lines)
    connection.ensure_connection()
    connection.commit = phases.wrap(COMMIT_PHASE, connection.commit)
    gc.collect()
    baseline = rss_mb()
    with connection.execute_wrapper(phases.execute):
        started, cpu = time.perf_counter(), time.process_time()
        allocation_run = run.allocation_run_execute(period=Period.parse(PERIOD))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    phases.wall[OTHER_PHASE] = seconds - sum(phases.wall.values())
    rating = allocation_run.rating_run
    print(
        json.dumps(
            {
                "seconds": seconds,
                "python_cpu": cpu,
                "phases": {name: [phases.wall[name], phases.sql.get(name, 0.0)] for name in phases.wall},
                "queries": sum(phases.queries.values()),
                "baseline_mb": baseline,
                "peak_mb": peak,
                "run": allocation_run.pk,
                "rated_in_run": rating.pk > newest_rating,
                "lines_rated": rating.lines_rated,
                "lines_unpriced": rating.lines_unpriced,
                "rated_cost": str(rating.cost),
                "invoice_total": str(allocation_run.invoice_total),
                "allocated": str(allocation_run.allocated),
                "unallocated": str(allocation_run.unallocated),
                "is_flagged": allocation_run.is_flagged,
                **counts,
            }
        )
    )


def child_profile() -> None:
    """EXPLAIN ANALYZE of the run's statements over the kept sums and the later batches'
    lines, then a cProfile of one run."""
    import cProfile
    import io
    import pstats

    from django.db import connection, transaction

    from allocation.choices import AllocationRunStatus
    from allocation.models import AllocationRun
    from allocation.selectors.rating import rated_lines_params
    from allocation.services.rating import LATER_LINES, priced_sums_sql
    from allocation.services.runs.charging import group_fields
    from allocation.services.runs.run import allocation_run_execute
    from pricing.periods import Period

    current = AllocationRun.objects.get(period=PERIOD, status=AllocationRunStatus.COMPLETED)
    rating = current.rating_run
    fields = group_fields(list(current.mapping_version.rules.order_by("position")))
    start, end = Period.parse(PERIOD).bounds
    later = rated_lines_params(run_id=rating.pk, start=start, end=end) | {"since": rating.ledger_batch_high or 0}
    statements = [
        (
            "pricing the kept sums (priced_sums_sql, as ledger_groups runs it)",
            priced_sums_sql(fields, rating.thresholds),
            {"run": rating.pk},
        ),
        (
            f"the later batches' lines (into {LATER_LINES}, when a rating extends another)",
            'SELECT * FROM "allocation_usageline" l WHERE l.occurred_at >= %(start)s AND l.occurred_at < %(end)s '
            "AND l.batch_id > %(since)s",
            later,
        ),
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL enable_sort = off")
        for title, sql, params in statements:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            print(f"\n--- EXPLAIN ANALYZE: {title}\n" + "\n".join(row[0] for row in cursor.fetchall()))
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    allocation_run_execute(period=Period.parse(PERIOD))
    profile.disable()
    print(f"\n--- cProfile of one run ({time.perf_counter() - started:.1f} s under the profiler)")
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(order).print_stats(25)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:12000])


# --------------------------------------------------------------------------- the benchmark


def measure(url: str, lines: int, repeat: int, rebuild: bool = False) -> dict:
    print(f"\n== {lines:,} ledger lines: database {database_name(url)}", flush=True)
    database_create(url)
    child(url, "prepare", str(lines), *(["rebuild"] if rebuild else []))
    time_scan(url)  # warm the cache for both alike
    scans, results = [], {kind: [] for kind in KINDS}
    for i in range(1, repeat + 1):
        scans.append(time_scan(url))
        for kind, title in KINDS.items():
            result = child(url, kind)
            results[kind].append(result)
            print(
                f"run {i}: scan {scans[-1]:6.2f} s | allocation {result['seconds']:6.2f} s "
                f"({result['seconds'] / scans[-1]:.1f}x; {title}), peak RSS {result['peak_mb']:.0f} MB "
                f"(+{result['peak_mb'] - result['baseline_mb']:.0f} MB over {result['baseline_mb']:.0f} MB "
                "at the start)",
                flush=True,
            )
            assert result["rated_in_run"] == (kind != "run"), result
            child(url, "prepare", str(lines))
    return {"lines": lines, "url": url, "scans": scans, **results}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summary(result: dict, kind: str = "run") -> dict:
    runs = result[kind]
    seconds = statistics.median(r["seconds"] for r in runs)
    scan = statistics.median(result["scans"])
    every = [r for k in KINDS for r in result[k]]
    return {
        "seconds": seconds,
        "scan": scan,
        "ratio": seconds / scan,
        # Memory over every run, whatever its rating.
        "peak": max(r["peak_mb"] for r in every),
        "growth": max(r["peak_mb"] - r["baseline_mb"] for r in every),
        "groups": runs[-1].get("groups", 0),
        "allocation_lines": runs[-1].get("allocation_lines", 0),
    }


# How each kind of run reads the ledger, for the report.
KIND_NOTES = {
    "run": "the run prices the rating's kept sums",
    "batch": "the run reads the lines of the later batches and adds them to the kept sums",
    "prices": "the run prices the kept sums at the new prices",
    "full": "the run rates the month's whole ledger",
}


def report(main: dict, small: dict | None) -> None:
    lines = main["lines"]
    figures = {kind: summary(main, kind) for kind in KINDS}
    warm = figures["run"]
    last = main["run"][-1]
    print(f"\nledger lines:          {lines:,} (period {PERIOD}, generator v{GENERATOR_VERSION})")
    print(
        f"bare GROUP BY scan:    {warm['scan']:6.2f} s  ({lines / warm['scan']:,.0f} lines/s)   runs: "
        + ", ".join(f"{s:.2f}" for s in main["scans"])
    )
    print("allocation run:")
    for kind, title in KINDS.items():
        f = figures[kind]
        print(
            f"  {title:26s} {f['seconds']:6.2f} s ({f['ratio']:5.2f}x the scan)   runs: "
            + ", ".join(f"{r['seconds']:.2f}" for r in main[kind])
            + f"   ({KIND_NOTES[kind]})"
        )
    print(
        f"last run: {last['groups']:,} ledger groups, {last['allocation_lines']:,} allocation lines, "
        f"{last['queries']} queries; rated {last['lines_rated']:,} lines ({last['lines_unpriced']:,} unpriced), "
        f"${float(last['rated_cost']):,.2f}; invoices ${float(last['invoice_total']):,.2f} = allocated "
        f"${float(last['allocated']):,.2f} + unallocated ${float(last['unallocated']):,.2f}"
        + (" (flagged: a provider beyond the tolerance)" if last["is_flagged"] else "")
    )
    cpu = statistics.median(r["python_cpu"] for r in main["run"])
    print(
        f"Python CPU time of the run rated ahead: {cpu:.2f} s ({cpu / warm['seconds']:.0%}); "
        "the rest is waiting on PostgreSQL"
    )
    for kind, title in KINDS.items():
        measured, total = main[kind], figures[kind]
        print(f"\nphases of the run, {title} (median of {len(measured)}; self time, of which SQL):")
        names = list(dict.fromkeys(name for r in measured for name in r["phases"]))
        for name in names:
            wall = statistics.median(r["phases"].get(name, [0, 0])[0] for r in measured)
            sql = statistics.median(r["phases"].get(name, [0, 0])[1] for r in measured)
            print(f"  {name:38s} {wall:7.2f} s  {wall / total['seconds']:5.1%}   SQL {sql:6.2f} s")
    print("\nmemory (peak RSS, ru_maxrss of the run's own process; growth = peak - RSS before the call):")
    sizes = [(small["lines"], summary(small)), (lines, warm)] if small else [(lines, warm)]
    for size, f in sizes:
        print(
            f"  {size:>12,} lines: peak {f['peak']:6.0f} MB, growth {f['growth']:6.0f} MB, "
            f"{f['groups']:,} groups, {f['allocation_lines']:,} allocation lines"
            + (f"; run {f['seconds']:.2f} s, scan {f['scan']:.2f} s ({f['ratio']:.1f}x)" if size != lines else "")
        )
    print("\ntargets (the run on the rated ledger; [a batch since | new prices since | no rating standing])")
    others = [figures["batch"], figures["prices"], figures["full"]]
    print(
        f"  {verdict(warm['seconds'] < TARGET_SECONDS)}  run under {TARGET_SECONDS:.0f} s: {warm['seconds']:.2f} s  ["
        + " | ".join(f"{verdict(f['seconds'] < TARGET_SECONDS)} {f['seconds']:.2f} s" for f in others)
        + "]"
    )
    print(
        f"  {verdict(warm['ratio'] <= TARGET_SCAN_RATIO)}  within {TARGET_SCAN_RATIO:.0f}x of the scan: "
        f"{warm['ratio']:.2f}x  ["
        + " | ".join(f"{verdict(f['ratio'] <= TARGET_SCAN_RATIO)} {f['ratio']:.2f}x" for f in others)
        + "]"
    )
    if small:
        base = summary(small)
        ok = warm["growth"] <= base["growth"] * MEMORY_SLACK + MEMORY_SLACK_MB
        print(
            f"  {verdict(ok)}  memory independent of the ledger size: growth {warm['growth']:.0f} MB at "
            f"{lines:,} lines vs {base['growth']:.0f} MB at {small['lines']:,} ({lines / small['lines']:.0f}x the "
            f"lines; allowed {MEMORY_SLACK:.2f}x + {MEMORY_SLACK_MB:.0f} MB); peak {warm['peak']:.0f} vs "
            f"{base['peak']:.0f} MB"
        )
    else:
        print("  ----  memory independent of the ledger size: not measured (--small-lines 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000_000, help="ledger lines (default 10,000,000)")
    parser.add_argument("--small-lines", type=int, default=1_000_000, help="a second ledger size, for memory (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs at each size (default 3)")
    parser.add_argument("--profile", action="store_true", help="then EXPLAIN ANALYZE the scans and cProfile a run")
    parser.add_argument("--rebuild", action="store_true", help="build the worlds again even if built")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        django_setup()
        if args.child[0] == "prepare":
            child_prepare(int(args.child[1]), rebuild="rebuild" in args.child[2:])
        elif args.child[0] in KINDS:
            child_run(args.child[0])
        else:
            child_profile()
        return
    base = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    if "bench" not in database_name(base):
        sys.exit(f"{base}: the benchmark empties the allocation tables; use a database name with 'bench' in it")
    load = os.getloadavg()  # the machine may be shared: other work shows in the wall times
    small = None
    if args.small_lines and args.small_lines != args.lines:
        small = measure(database_url(base, args.small_lines), args.small_lines, args.repeat, args.rebuild)
    main_result = measure(database_url(base, args.lines), args.lines, args.repeat, args.rebuild)
    report(main_result, small)
    now = os.getloadavg()
    print(
        f"load average (1, 5, 15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start, "
        f"{now[0]:.1f} {now[1]:.1f} {now[2]:.1f} at the end; {os.cpu_count()} CPUs"
    )
    if args.profile:
        child(main_result["url"], "profile")


if __name__ == "__main__":
    main()
