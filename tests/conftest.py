"""Fixtures shared by the whole suite.

- `user`, `client_logged_in`, `api_client`: a regular user and clients logged
  in as them (`admin_user` and `admin_client` come from pytest-django).
- Celery runs eagerly (in-process) in every test, whatever the environment
  says, except in tests that use `celery_worker`.
- `celery_worker`: a real worker process on the configured broker, reading the
  test database. Tests using it are `@pytest.mark.django_db(transaction=True)`
  so the worker sees committed rows; add `serialized_rollback=True` when they
  need data the migrations seed (the unit catalog), since a transactional test
  ends by emptying the database. Without a broker the worker tests skip,
  except under CI (`CI=true`), where a missing or unreachable broker or
  PostgreSQL fails the run instead of letting it pass on skips.
- `signing_authority` (session) and `signing_certificate`: a test CA and a signing
  certificate it issued; the second points this test's settings at them.
- `statement_pdfs`: approving a statement renders and signs its PDF (on commit), with the
  test certificate, under a MEDIA_ROOT of the test's own; without it approval makes none.
- Browser tests (tests/browser/, marked `browser`) run only when asked for, by a
  `-m` naming `browser` (`make test-browser`) or by naming their folder or files
  on the command line; every other run deselects them, so `make test` needs no
  chromium.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

WORKER_START_TIMEOUT = 60  # seconds for the worker to answer a ping
WORKER_STOP_TIMEOUT = 20  # seconds for a warm shutdown before it is killed


def running_under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def _unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where a skipped pass would prove nothing."""
    if running_under_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _postgres_problem(url: str) -> str | None:
    """Why the PostgreSQL server in `url` can't be reached, or None."""
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    try:
        # The maintenance database: the test database does not exist yet.
        psycopg.connect(
            dbname="postgres",
            user=cfg.get("USER") or None,
            password=cfg.get("PASSWORD") or None,
            host=cfg.get("HOST") or None,
            port=cfg.get("PORT") or None,
            connect_timeout=5,
        ).close()
    except psycopg.Error as exc:
        return f"PostgreSQL from DATABASE_URL is unreachable: {str(exc).strip()}"
    return None


def _broker_problem(url: str) -> str | None:
    """Why the Celery broker at `url` can't be reached, or None."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:  # kombu raises transport-specific errors
        return f"the Celery broker {url} is unreachable: {type(exc).__name__}: {exc}"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI, stop at once when a configured server is down, before any test runs."""
    if not running_under_ci():
        return
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        problem = _postgres_problem(database_url)
        if problem:
            pytest.exit(f"CI=true and {problem}", returncode=3)
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if broker_url:
        problem = _broker_problem(broker_url)
        if problem:
            pytest.exit(f"CI=true and {problem}", returncode=3)


BROWSER_TESTS = Path(__file__).resolve().parent / "browser"
_browser_deselected = pytest.StashKey[int]()


def _browser_tests_asked_for(config: pytest.Config) -> Callable[[pytest.Item], bool]:
    """Which browser tests this run asked for: all, when its -m names them (the expression
    then selects them itself); else those inside a path given on the command line."""
    if re.search(r"\bbrowser\b", config.option.markexpr or ""):
        return lambda item: True
    named = []
    if config.args_source is pytest.Config.ArgsSource.ARGS:
        paths = [(config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.args]
        named = [path for path in paths if path.is_relative_to(BROWSER_TESTS)]
    return lambda item: any(item.path.is_relative_to(path) for path in named)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Mark worker tests so a pass can select or deselect them: -m "not celery_worker".
    for item in items:
        if "celery_worker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.celery_worker)
        if item.path.is_relative_to(BROWSER_TESTS):
            item.add_marker(pytest.mark.browser)
    # Deselected here rather than by a -m in the Makefile, which a PYTEST_ARGS='-m ...' would replace.
    asked_for = _browser_tests_asked_for(config)
    kept, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("browser") and not asked_for(item) else kept).append(item)
    if deselected:
        items[:] = kept
        config.hook.pytest_deselected(items=deselected)
        config.stash[_browser_deselected] = len(deselected)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    deselected = config.stash.get(_browser_deselected, 0)
    if deselected:
        terminalreporter.write_line(f"{deselected} browser tests deselected: `make test-browser` runs them.")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A test database of its own per run on PostgreSQL.

    Two runs against one server (a developer and CI, or two terminals) would
    otherwise share `test_<name>`, and the second would drop the first's.
    """
    from django.conf import settings

    for db in settings.DATABASES.values():
        if db["ENGINE"] == "django.db.backends.postgresql":
            test = db.setdefault("TEST", {})
            test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{os.getpid()}"


# --- users and clients ---------------------------------------------------------

USER_PASSWORD = "test-password-123"


@pytest.fixture
def user(db, django_user_model):
    """An operator (non-staff): a finance analyst on the platform team, who may open every
    company page and feed the ledger, but not sign off. Its password is USER_PASSWORD.
    Tests of who may do what make their own users (tests/allocation/test_access*.py)."""
    from django.contrib.auth.models import Group

    operator = django_user_model.objects.create_user(
        username="user", email="user@example.com", password=USER_PASSWORD, first_name="Test", last_name="User"
    )
    for role in ("finance_analyst", "platform_admin"):
        operator.groups.add(Group.objects.get_or_create(name=role)[0])
    return operator


@pytest.fixture
def client_logged_in(client, user):
    """Django's test client with a session for `user`."""
    client.force_login(user)
    return client


@pytest.fixture
def api_client(user):
    """DRF's APIClient authenticated as `user` (no CSRF, like a token client)."""
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(user=user)
    return api


# --- Celery ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def allocation_progress_per_test(monkeypatch):
    """Each test its own allocation progress keys: with Redis as the cache, a marker left
    by one test (or an earlier session) must not refuse another test's run."""
    from allocation.services.runs import progress

    prefix = uuid.uuid4().hex[:12]
    monkeypatch.setattr(progress, "_progress_key", lambda period: f"test-{prefix}:allocation-run:{period}")


@pytest.fixture(autouse=True)
def celery_eager(request, settings):
    """Run tasks in-process unless the test asks for the real worker.

    The Celery app reads its configuration once, so its conf is set directly
    as well as the Django setting.
    """
    from chargeback.celery_app import app

    eager = "celery_worker" not in request.fixturenames
    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    settings.CELERY_TASK_ALWAYS_EAGER = eager
    settings.CELERY_TASK_EAGER_PROPAGATES = True
    app.conf.task_always_eager = eager
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture(autouse=True)
def statement_pdf_on_approval(request, settings):
    """Approving a statement renders and signs its PDF only in the tests that ask for it
    (the `statement_pdfs` fixture): in eager mode every other approval would pay a render."""
    settings.CHARGEBACK_STATEMENT_PDF_ON_APPROVAL = "statement_pdfs" in request.fixturenames


@pytest.fixture
def statement_pdfs(settings, signing_certificate, tmp_path):
    """Approval makes the signed PDF, signed with the test certificate, stored under a
    MEDIA_ROOT of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return signing_certificate


@dataclass
class CeleryWorker:
    """A running worker process; `log_tail()` helps explain a failed test."""

    process: subprocess.Popen
    hostname: str
    queue: str
    log_path: Path
    media_root: Path  # where the worker stores files (statement PDFs): point settings.MEDIA_ROOT here

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except OSError:
            return "(no worker log)"


def _database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the database Django is connected to (the test database)."""
    engine = settings_dict["ENGINE"]
    name = settings_dict["NAME"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{name}"
    scheme = {"django.db.backends.postgresql": "postgres"}.get(engine)
    if scheme is None:
        raise RuntimeError(f"celery_worker: no DATABASE_URL scheme known for {engine}")
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or ""
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"{scheme}://{auth}{host}{port}/{quote(name, safe='')}"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # warm shutdown: finish the task, close connections
    try:
        process.wait(timeout=WORKER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _wait_for_database_release(connection, name: str, timeout: float = 15) -> None:
    """Wait until no other session holds the test database, so DROP DATABASE succeeds."""
    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name]
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.2)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory, signing_authority):
    """A real Celery worker process on the configured broker and the test database.

    Session-scoped: started once, stopped before pytest-django drops the test
    database. Its queue and node name are unique to this test run, so another
    worker on the same broker never takes the tests' tasks. It signs with the session's
    test certificate (`signing_authority`) and stores files under a MEDIA_ROOT of its own.
    """
    from django.conf import settings
    from django.db import connection

    from chargeback.celery_app import app

    broker_url = settings.CELERY_BROKER_URL
    if not broker_url:
        _unavailable("no Celery broker configured (set CELERY_BROKER_URL, e.g. redis://127.0.0.1:6379/0)")
    problem = _broker_problem(broker_url)
    if problem:
        _unavailable(problem)
    with django_db_blocker.unblock():
        settings_dict = dict(connection.settings_dict)
        db_name = settings_dict["NAME"]
        if connection.vendor == "sqlite" and connection.is_in_memory_db():
            _unavailable("the test database is in-memory SQLite, which a worker process cannot open")

    tag = f"chargeback-test-{os.getpid()}"
    hostname = f"{tag}@{socket.gethostname()}"
    queue = tag
    log_path = tmp_path_factory.mktemp("celery-worker") / "worker.log"
    media_root = tmp_path_factory.mktemp("celery-worker-media")
    celery_bin = Path(sys.executable).with_name("celery")
    command = [str(celery_bin)] if celery_bin.exists() else [sys.executable, "-m", "celery"]
    command += [
        "-A", "chargeback", "worker",
        "--pool=solo", "--concurrency=1", "-l", "warning",
        "-n", hostname, "-Q", queue,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chargeback.settings",
        "DATABASE_URL": _database_url(settings_dict),
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
        "CHARGEBACK_MEDIA_ROOT": str(media_root),
    }
    if settings.CELERY_RESULT_BACKEND:
        env["CELERY_RESULT_BACKEND"] = settings.CELERY_RESULT_BACKEND

    saved_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue  # this run's tasks go to this run's worker only
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = CeleryWorker(process=process, hostname=hostname, queue=queue, log_path=log_path, media_root=media_root)
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"the Celery worker exited with code {process.returncode} on start:\n{worker.log_tail()}",
                    pytrace=False,
                )
            if app.control.ping(destination=[hostname], timeout=1.0):
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the Celery worker did not answer a ping within {WORKER_START_TIMEOUT}s:\n{worker.log_tail()}",
                    pytrace=False,
                )
        yield worker
    finally:
        _stop(process)
        app.conf.task_default_queue = saved_queue
        with django_db_blocker.unblock():
            _wait_for_database_release(connection, db_name)


# --- signed statement PDFs -------------------------------------------------------

SIGNING_PASSPHRASE = "test-signing-passphrase"


@pytest.fixture(scope="session")
def signing_authority(tmp_path_factory):
    """A CA and a signing certificate it issued (chargeback.services.signing), made once a
    session. Its paths also go into the environment, so a `celery_worker` started after it
    signs with the same certificate."""
    from chargeback.services.signing import signing_certificate_make

    directory = tmp_path_factory.mktemp("signing")
    made = signing_certificate_make(
        organization="Test Org",
        ca_path=directory / "ca.pem",
        p12_path=directory / "signer.p12",
        passphrase=SIGNING_PASSPHRASE,
    )
    patch = pytest.MonkeyPatch()
    patch.setenv("CHARGEBACK_SIGNING_P12", str(made.p12_path))
    patch.setenv("CHARGEBACK_SIGNING_CA", str(made.ca_path))
    patch.setenv("CHARGEBACK_SIGNING_PASSPHRASE", SIGNING_PASSPHRASE)
    yield made
    patch.undo()


@pytest.fixture
def signing_certificate(signing_authority, settings):
    """The session's signing certificate and CA in this test's settings: `pdf_sign` signs
    with it and verification trusts its CA."""
    settings.CHARGEBACK_SIGNING_P12 = signing_authority.p12_path
    settings.CHARGEBACK_SIGNING_CA = signing_authority.ca_path
    settings.CHARGEBACK_SIGNING_PASSPHRASE = SIGNING_PASSPHRASE
    return signing_authority
