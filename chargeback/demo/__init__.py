"""The demo: a working installation from nothing (`python manage.py demo`).

Larkspur Software's organization, three months of seeded usage, the providers'
invoices of those months, a signed mapping, an allocation run per month and the
statements' close, all through the services a user would call. Its input files and
their sources are in `data/` (see `data/README.md`). Where each part lives:

* `organization.py`: the organization (`data/org.yaml`), the demo logins, the teams
  and tenants usage is tagged with;
* `usage.py`: the workloads, the events of each month and their ingestion;
* `mapping.py`: list prices, the embedding rate card, the signed mapping version and
  the activity counts;
* `invoices.py`: each provider's invoice files per month and their ingestion;
  `files.py` writes them;
* `runs.py`: the rating and the allocation run of each month, and their figures;
* `close.py`: the statements' close: the first month closed, the second in review
  with a dispute and its flagged run, the third open;
* `load.py`: `demo_load`, which does the above in order, and its `DemoResult`.

Callers import from here.
"""

from chargeback.demo.load import DemoResult, demo_load
from chargeback.demo.mapping import ACTIVITY_DRIVERS
from chargeback.demo.organization import DEMO_DATA, DEMO_PASSWORD, DEMO_USERNAME, demo_user_ensure
from chargeback.demo.usage import TRACE_FILES, WORKLOADS, Workload, demo_month_events, demo_months

__all__ = [
    "ACTIVITY_DRIVERS",
    "DEMO_DATA",
    "DEMO_PASSWORD",
    "DEMO_USERNAME",
    "TRACE_FILES",
    "WORKLOADS",
    "DemoResult",
    "Workload",
    "demo_load",
    "demo_month_events",
    "demo_months",
    "demo_user_ensure",
]
