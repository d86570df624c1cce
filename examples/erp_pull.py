#!/usr/bin/env python3
"""A reference ERP client for the chargeback's journal entries (standard library only).

It pulls a period's entries incrementally, "posts" each to a stand-in ERP (a JSON file
mapping each entry's external id to the document number the ERP gave it), acknowledges
each with that number, and keeps its checkpoint (the API's `cursor`) in a state file.

Crash-safe without double posting: the ERP's ledger is the truth of what was posted. An
entry already in the ledger is never posted again; if the crash came between posting and
acknowledging, the next run acknowledges it with the number the ledger holds (the API
answers a repeated acknowledgement as it did the first). The ledger and the state are
written to a temporary file and renamed, so a crash never leaves half a file.

    ERP_TOKEN=cbk_... python examples/erp_pull.py --base-url http://127.0.0.1:8000 \\
        --period 2026-10 --ledger erp-ledger.json --state erp-state.json

For tests: ERP_PULL_CRASH_AFTER=N exits (status 3) right after posting the (N+1)th entry to
the ledger, before acknowledging it, as a job killed at the worst moment would.
"""

import argparse
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

CRASH_EXIT = 3


def read_json(path: str, default: dict) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def write_json(path: str, data: dict) -> None:
    """Replace the file at once (write aside, flush to disk, rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


class Api:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
        full = url if url.startswith("http") else self.base_url + url
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(full, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)


class Erp:
    """The stand-in ERP: a ledger file of external id -> document number."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ledger: dict[str, str] = read_json(path, {})

    def post(self, entry: dict) -> str:
        if entry["external_id"] in self.ledger:
            return self.ledger[entry["external_id"]]
        debits = sum(line["debit_cents"] for line in entry["lines"])
        credits = sum(line["credit_cents"] for line in entry["lines"])
        if debits != credits:
            raise SystemExit(f"{entry['external_id']} does not balance: {debits} != {credits}")
        number = f"JE{100000 + len(self.ledger) + 1}"
        self.ledger[entry["external_id"]] = number
        write_json(self.path, self.ledger)
        return number


def pull(api: Api, erp: Erp, *, period: str, state_path: str, page_size: int, crash_after: int | None) -> dict:
    state = read_json(state_path, {})
    query = {"period": period, "page_size": page_size}
    if state.get("cursor"):
        query["cursor"] = state["cursor"]
    url = "/api/v1/journal-entries?" + urllib.parse.urlencode(query)
    counts = {"posted": 0, "acknowledged": 0, "skipped": 0, "pages": 0}
    while url:
        status, page = api.call("GET", url)
        if status != 200:
            raise SystemExit(f"GET {url}: {status} {page}")
        counts["pages"] += 1
        for entry in page["results"]:
            known = erp.ledger.get(entry["external_id"])
            if entry["status"] == "acknowledged":
                if known is not None and known != entry["erp_document_number"]:
                    raise SystemExit(
                        f"{entry['external_id']}: acknowledged as {entry['erp_document_number']}, the ERP has {known}"
                    )
                counts["skipped"] += 1
                continue
            number = erp.post(entry)
            counts["posted"] += known is None
            if crash_after is not None and counts["acknowledged"] >= crash_after:
                print(json.dumps({"crashed_after": counts}), flush=True)
                os._exit(CRASH_EXIT)
            status, body = api.call(
                "POST",
                f"/api/v1/journal-entries/{entry['id']}/acknowledge",
                {"document_number": number},
                headers={"Idempotency-Key": f"ack-{entry['external_id']}-{number}"},
            )
            if status != 200:
                raise SystemExit(f"acknowledging {entry['external_id']} as {number}: {status} {body}")
            counts["acknowledged"] += 1
        # The page is done: its cursor is the checkpoint to resume from.
        if page["cursor"]:
            write_json(state_path, {**state, "period": period, "cursor": page["cursor"]})
            state = read_json(state_path, {})
        url = page["next"]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--period", required=True, help="YYYY-MM")
    parser.add_argument("--ledger", required=True, help="The stand-in ERP's ledger (JSON)")
    parser.add_argument("--state", required=True, help="The checkpoint file (JSON)")
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    token = os.environ.get("ERP_TOKEN")
    if not token:
        sys.exit("ERP_TOKEN: the ERP's API token")
    crash = os.environ.get("ERP_PULL_CRASH_AFTER")
    counts = pull(
        Api(args.base_url, token),
        Erp(args.ledger),
        period=args.period,
        state_path=args.state,
        page_size=args.page_size,
        crash_after=int(crash) if crash else None,
    )
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
