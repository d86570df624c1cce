#!/usr/bin/env python3
"""Benchmark: one signed statement PDF of about 20 pages, rendered and signed.

Sets up, in a temporary folder, the embedded default (SQLite, Celery eager) with the test
suite's hand-computed October (tests/chargeback/close_world.py), grows search's statement
(CC-110) to `--lines` charge lines spread over teams, features, providers and modalities
(tests/chargeback/statement_pdf_world.py), signs it off, and makes a test signing
certificate. Then, `--repeat` times, it times:

* render: statement_pdf_render(statement), WeasyPrint's PDF/A-3b with the two attachments
* sign:   pdf_sign(pdf), the PAdES B-B signature (pyHanko) on that PDF
* issue:  statement_pdf_issue(statement, force=True), what the Celery task runs: render,
          sign, page count, the file stored with its SHA-256

and prints the medians (wall and CPU seconds), per-page figures, the shares of render and
sign in an issue, peak RSS after each repeat (flat means no leak across renders), and
PASS/MISS against the target (issue of a 20-page statement under 3 s, median of 5).

Run from the repository root:  .venv/bin/python bench/statement_pdf/run.py [--lines N] [--repeat R]
"""

import argparse
import os
import resource
import statistics
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

TARGET_SECONDS = 3.0
TARGET_PAGES = 20
DEFAULT_LINES = 420  # 20 pages: the unit costs print 25 features, the lines run over landscape pages
PASSPHRASE = "bench-signing-passphrase"


def _environment(folder: Path) -> None:
    """The embedded default in `folder`: nothing of the developer's database or media touched."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "chargeback.settings",
            "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
            "CHARGEBACK_MEDIA_ROOT": str(folder / "media"),
            "CELERY_BROKER_URL": "",
            "CHARGEBACK_STATEMENT_PDF_ON_APPROVAL": "false",  # the bench makes the PDFs itself
            "CHARGEBACK_SIGNING_P12": str(folder / "signer.p12"),
            "CHARGEBACK_SIGNING_CA": str(folder / "ca.pem"),
            "CHARGEBACK_SIGNING_PASSPHRASE": PASSPHRASE,
            "CHARGEBACK_UNALLOCATED_OWNER": "CC-100",
        }
    )


def _timed(call):
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="charge lines added to the statement")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-statement-pdf-") as tmp:
        folder = Path(tmp)
        _environment(folder)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from chargeback.services.signing import pdf_sign, signing_certificate_make
        from chargeback.services.statement_pdf import statement_pdf_issue, statement_pdf_render
        from tests.chargeback.close_world import close_world
        from tests.chargeback.statement_pdf_world import approved_statement

        print(f"setting up: SQLite in {folder}, a test CA, CC-110 grown by {args.lines} lines ...", flush=True)
        call_command("migrate", verbosity=0)
        signing_certificate_make(
            organization="Bench Org", ca_path=folder / "ca.pem", p12_path=folder / "signer.p12", passphrase=PASSPHRASE
        )
        world = close_world(folder, get_user_model())
        statement = approved_statement(world, "CC-110", extra_lines=args.lines)

        statement_pdf_issue(statement)  # warm: fonts, templates, the signer's key
        renders, signs, issues, rss = [], [], [], []
        pages = size = 0
        for _ in range(args.repeat):
            pdf, wall, cpu = _timed(lambda: statement_pdf_render(statement))
            renders.append((wall, cpu))
            _signed, wall, cpu = _timed(lambda pdf=pdf: pdf_sign(pdf))
            signs.append((wall, cpu))
            issued, wall, cpu = _timed(lambda: statement_pdf_issue(statement, force=True))
            issues.append((wall, cpu))
            assert issued.status == "ready", issued.error
            pages, size = issued.page_count, issued.size
            rss.append(_rss_mb())

    def median(rows, index):
        return statistics.median(row[index] for row in rows)

    render_wall, sign_wall, issue_wall = median(renders, 0), median(signs, 0), median(issues, 0)
    issue_cpu = median(issues, 1)
    print()
    print(f"statement: {statement.line_count} lines, {pages} pages, {size / 1024:.0f} KiB signed")
    print(f"{'median of ' + str(args.repeat):<22}{'wall s':>9}{'cpu s':>9}{'ms/page':>10}")
    for label, rows in (("render (WeasyPrint)", renders), ("sign (pyHanko)", signs), ("issue (task's work)", issues)):
        print(f"{label:<22}{median(rows, 0):>9.3f}{median(rows, 1):>9.3f}{1000 * median(rows, 0) / pages:>10.1f}")
    print()
    print(f"render / issue  {render_wall / issue_wall:6.1%}   (layout and PDF writing)")
    print(f"sign / issue    {sign_wall / issue_wall:6.1%}   (PAdES signature)")
    print(f"issue cpu/wall  {issue_cpu / issue_wall:6.2f}   (below 1: the machine was busy with others)")
    print(f"peak RSS after each repeat (MB): {', '.join(f'{value:.0f}' for value in rss)}")
    scaled = issue_wall * TARGET_PAGES / pages
    ratio = scaled / TARGET_SECONDS
    print(f"scaled to {TARGET_PAGES} pages: {scaled:.2f} s; target {TARGET_SECONDS:.1f} s: ratio {ratio:.2f}")
    verdict = "PASS" if scaled < TARGET_SECONDS else "MISS"
    print(f"{verdict}: a {TARGET_PAGES}-page statement rendered and signed in {scaled:.2f} s (< {TARGET_SECONDS} s)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
