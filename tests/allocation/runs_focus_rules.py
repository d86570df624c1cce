"""FOCUS 1.2 rules for a cost and usage CSV, as the export tests check them.

Each check names the requirement it enforces by its id in the FOCUS 1.2
requirements model (finopsfoundation/focus_validator,
`focus_validator/rules/model-1.2.json`, "FOCUSVersion": "1.2"), whose
`MustSatisfy` sentences are the specification's normative text; the sentence
is quoted, shortened, beside each check. Only what can be decided from the
file is checked here: requirements about the world outside it (BilledCost
matches the invoice, InvoiceId is set when an invoice exists) are asserted by
the tests themselves.

The FinOps Foundation's validator (focus-validator 2.x, on GitHub, built from
that model; PyPI holds only 1.0.0, which checks FOCUS 1.0 and its pre-release
column names) reads some conditional requirements without their condition:
ChargeFrequency and InvoiceId present, InvoiceId never null (InvoiceId-C-005-C),
EffectiveCost 0 on every Purchase row (EffectiveCost-C-005-C). The export meets
that reading too, so each is a rule here (`PROMISED`, `NOT_NULL`, `_row`).

CSV conventions: a null is an empty field (NullHandling-A-002-M forbids empty
strings as values, so an empty field can only mean null), the header names
the columns.
"""

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

__all__ = [
    "FOCUS_COLUMNS",
    "PRESENCE_RULES",
    "PROMISED",
    "Violation",
    "focus_violations",
    "mandatory_columns",
    "read_focus_csv",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Every column FOCUS 1.2 defines (the CostAndUsage-D-002-M composite): anything else is a custom column.
FOCUS_COLUMNS: frozenset[str] = _words(
    """
    AvailabilityZone BilledCost BillingAccountId BillingAccountName BillingAccountType BillingCurrency
    BillingPeriodEnd BillingPeriodStart CapacityReservationId CapacityReservationStatus ChargeCategory
    ChargeClass ChargeDescription ChargeFrequency ChargePeriodEnd ChargePeriodStart CommitmentDiscountCategory
    CommitmentDiscountId CommitmentDiscountName CommitmentDiscountQuantity CommitmentDiscountStatus
    CommitmentDiscountType CommitmentDiscountUnit ConsumedQuantity ConsumedUnit ContractedCost
    ContractedUnitPrice EffectiveCost InvoiceId InvoiceIssuerName ListCost ListUnitPrice PricingCategory
    PricingCurrency PricingCurrencyContractedUnitPrice PricingCurrencyEffectiveCost PricingCurrencyListUnitPrice
    PricingQuantity PricingUnit ProviderName PublisherName RegionId RegionName ResourceId ResourceName
    ResourceType ServiceCategory ServiceName ServiceSubcategory SkuId SkuMeter SkuPriceDetails SkuPriceId
    SubAccountId SubAccountName SubAccountType Tags
    """
)

# The presence rule of each unconditional column (CostAndUsage-D-xxx-M: "<column> MUST be present in a FOCUS dataset").
PRESENCE_RULES: dict[str, str] = {
    "BillingAccountName": "CostAndUsage-D-005-M",
    "BilledCost": "CostAndUsage-D-006-M",
    "ChargeCategory": "CostAndUsage-D-008-M",
    "BillingPeriodStart": "CostAndUsage-D-009-M",
    "BillingPeriodEnd": "CostAndUsage-D-010-M",
    "PublisherName": "CostAndUsage-D-021-M",
    "InvoiceIssuerName": "CostAndUsage-D-023-M",
    "BillingAccountId": "CostAndUsage-D-024-M",
    "ChargeDescription": "CostAndUsage-D-025-M",
    "ChargeClass": "CostAndUsage-D-026-M",
    "ChargePeriodEnd": "CostAndUsage-D-028-M",
    "ContractedCost": "CostAndUsage-D-030-M",
    "EffectiveCost": "CostAndUsage-D-031-M",
    "ListCost": "CostAndUsage-D-032-M",
    "BillingCurrency": "CostAndUsage-D-035-M",
    "PricingQuantity": "CostAndUsage-D-036-M",
    "ChargePeriodStart": "CostAndUsage-D-037-M",
    "ProviderName": "CostAndUsage-D-038-M",
    "ServiceCategory": "CostAndUsage-D-040-M",
    "ServiceName": "CostAndUsage-D-041-M",
    "PricingUnit": "CostAndUsage-D-068-M",
}

# RECOMMENDED columns the export promises, which focus-validator fails a dataset without.
PROMISED: dict[str, str] = {
    "ChargeFrequency": "CostAndUsage-D-027-O",
    "InvoiceId": "CostAndUsage-D-033-O",
}

# ChargeCategory-C-003-M, ChargeClass-C-005-C, ChargeFrequency-C-003-M: allowed values.
CHARGE_CATEGORIES = frozenset({"Usage", "Purchase", "Tax", "Credit", "Adjustment"})
CHARGE_FREQUENCIES = frozenset({"One-Time", "Recurring", "Usage-Based"})
# ServiceCategory-C-003-M and ServiceSubcategory-C-003-M / -C-004-M: each subcategory has one parent.
SERVICE_SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "AI and Machine Learning": (
        "AI Platforms",
        "Bots",
        "Generative AI",
        "Machine Learning",
        "Natural Language Processing",
        "Other (AI and Machine Learning)",
    ),
    "Analytics": (
        "Analytics Platforms",
        "Business Intelligence",
        "Data Processing",
        "Search",
        "Streaming Analytics",
        "Other (Analytics)",
    ),
    "Business Applications": ("Productivity and Collaboration", "Other (Business Applications)"),
    "Compute": (
        "Containers",
        "End User Computing",
        "Quantum Compute",
        "Serverless Compute",
        "Virtual Machines",
        "Other (Compute)",
    ),
    "Databases": (
        "Caching",
        "Data Warehouses",
        "Ledger Databases",
        "NoSQL Databases",
        "Relational Databases",
        "Time Series Databases",
        "Other (Databases)",
    ),
    "Developer Tools": (
        "Developer Platforms",
        "Continuous Integration and Deployment",
        "Development Environments",
        "Source Code Management",
        "Quality Assurance",
        "Other (Developer Tools)",
    ),
    "Identity": ("Identity and Access Management", "Other (Identity)"),
    "Integration": ("API Management", "Messaging", "Workflow Orchestration", "Other (Integration)"),
    "Internet of Things": ("IoT Analytics", "IoT Platforms", "Other (Internet of Things)"),
    "Management and Governance": (
        "Architecture",
        "Compliance",
        "Cost Management",
        "Data Governance",
        "Disaster Recovery",
        "Endpoint Management",
        "Observability",
        "Support",
        "Other (Management and Governance)",
    ),
    "Media": ("Content Creation", "Gaming", "Media Streaming", "Mixed Reality", "Other (Media)"),
    "Migration": ("Data Migration", "Resource Migration", "Other (Migration)"),
    "Mobile": ("Other (Mobile)",),
    "Multicloud": ("Multicloud Integration", "Other (Multicloud)"),
    "Networking": (
        "Application Networking",
        "Content Delivery",
        "Network Connectivity",
        "Network Infrastructure",
        "Network Routing",
        "Network Security",
        "Other (Networking)",
    ),
    "Security": (
        "Secret Management",
        "Security Posture Management",
        "Threat Detection and Response",
        "Other (Security)",
    ),
    "Storage": (
        "Backup Storage",
        "Block Storage",
        "File Storage",
        "Object Storage",
        "Storage Platforms",
        "Other (Storage)",
    ),
    "Web": ("Application Platforms", "Other (Web)"),
    "Other": ("Other (Other)",),
}
SUBCATEGORY_PARENT = {sub: category for category, subs in SERVICE_SUBCATEGORIES.items() for sub in subs}

# CurrencyFormat-A-001-C: "a three-letter alphabetic code as dictated in ISO 4217:2015". The active
# alphabetic codes of ISO 4217 list one (currencies in transition kept), written out here.
ISO_4217 = _words(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL
    GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD
    KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO
    NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD
    SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV
    WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
    """
)
# BillingCurrency-C-006-M: "MUST be expressed in national currency": not a fund, metal, unit of account or test code.
NOT_NATIONAL = _words("BOV CHE CHW CLF COU MXV USN UYI UYW XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XTS XUA XXX")

# DateTimeFormat-A-003-M .. -006-M: extended ISO 8601 'YYYY-MM-DDTHH:mm:ssZ', UTC.
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# NumericFormat-A-003-M .. -011-M: a single integer or decimal value, no fraction, symbols, units,
# thousands separators or '+' sign; '-' only for a negative value. The spec also allows E notation
# (-A-005-M); the export promises plain decimals, so an exponent is refused here as well.
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")

# UnitFormat: allowed data size abbreviations, time-based units, recommended count-based units.
DATA_SIZE_UNITS = _words("b Kb Mb Gb Tb Pb Eb Kib Mib Gib Tib Pib Eib B KB MB GB TB PB EB KiB MiB GiB TiB PiB EiB")
LISTED_UNITS = _words(
    """
    Year Years Month Months Day Days Hour Hours Minute Minutes Second Seconds Millisecond Milliseconds
    Microsecond Microseconds Count Counts Unit Units Request Requests Token Tokens Connection Connections
    Certificate Certificates Domain Domains Core Cores
    """
)
# `<unit-quantity> <units>`, `<unit>-<units>` (compound) or `<units>/<unit>` (ratio), quantities whole numbers.
UNIT = re.compile(r"^(?:[1-9]\d* )?[A-Za-z]+(?:-[A-Za-z]+)?(?:/(?:[1-9]\d* )?[A-Za-z]+)?$")


@dataclass(frozen=True)
class Violation:
    line: int  # line in the file: 1 is the header
    column: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.column}: {self.rule}: {self.message}"


def mandatory_columns(path: Path) -> list[str]:
    """The unconditional MUST-be-present columns, from the presence list's first two lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("FOCUS 1.2") and lines[0].rstrip().endswith(": 21"), lines[0]
    return [name.strip() for name in lines[1].split(",")]


def read_focus_csv(text: str) -> tuple[list[str], list[dict[str, str | None]]]:
    """Header and rows of a CSV, an empty field read as null."""
    reader = csv.reader(io.StringIO(text, newline=""))  # a quoted cell may hold a line break
    header = next(reader)
    rows = [{name: (value if value != "" else None) for name, value in zip(header, row, strict=True)} for row in reader]
    return header, rows


def focus_violations(
    header: list[str], rows: list[dict[str, str | None]], *, mandatory: Iterable[str]
) -> list[Violation]:
    found: list[Violation] = []
    found += _dataset(header, rows, list(mandatory))
    for number, row in enumerate(rows, start=2):
        found += _row(number, row)
    return found


# --- the dataset ---------------------------------------------------------------------------------------------


def _dataset(header: list[str], rows: list[dict], mandatory: list[str]) -> list[Violation]:
    found = []

    def fail(column: str, rule: str, message: str) -> None:
        found.append(Violation(1, column, rule, message))

    for column in mandatory:
        if column not in header:
            fail(column, PRESENCE_RULES.get(column, "CostAndUsage-D-001-M"), f"{column} MUST be present")
    for column, rule in PROMISED.items():
        if column not in header:
            fail(column, rule, f"{column} is RECOMMENDED, and the export promises it")
    if ("ConsumedQuantity" in header) != ("ConsumedUnit" in header):
        fail("ConsumedUnit", "CostAndUsage-D-011-C/D-066-C", "ConsumedQuantity and ConsumedUnit are present together")
    if len(set(header)) != len(header):
        fail("*", "ColumnHandling-A-000-M", "a column appears twice")
    custom_seen = False
    for column in header:
        if column in FOCUS_COLUMNS:
            if custom_seen:
                fail(column, "ColumnHandling-A-013-O", "custom columns SHOULD be listed after all FOCUS columns")
            if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", column):
                fail(column, "ColumnHandling-A-001-M/-003-M", "column IDs MUST be Pascal case and alphanumeric")
        else:
            custom_seen = True
            if not column.startswith("x_"):
                fail(column, "ColumnHandling-A-010-M", "custom columns MUST be prefixed with a consistent x_ prefix")
    # ServiceName-C-005-C: "MUST have one and only one ServiceCategory"; -C-008-C: SHOULD one ServiceSubcategory.
    for other, rule in (("ServiceCategory", "ServiceName-C-005-C"), ("ServiceSubcategory", "ServiceName-C-008-C")):
        if other not in header or "ServiceName" not in header:
            continue
        values = defaultdict(set)
        for row in rows:
            values[row["ServiceName"]].add(row[other])
        for name, seen in values.items():
            if len(seen) != 1:
                fail("ServiceName", rule, f"{name!r} has {len(seen)} values of {other}: {sorted(map(str, seen))}")
    return found


# --- one row -------------------------------------------------------------------------------------------------

NOT_NULL = {
    "BilledCost": "BilledCost-C-003-M",
    "BillingAccountId": "BillingAccountId-C-001-M",
    "BillingCurrency": "BillingCurrency-C-004-M",
    "BillingPeriodEnd": "BillingPeriodEnd-C-003-M",
    "BillingPeriodStart": "BillingPeriodStart-C-003-M",
    "ChargeCategory": "ChargeCategory-C-002-M",
    "ChargePeriodEnd": "ChargePeriodEnd-C-003-M",
    "ChargePeriodStart": "ChargePeriodStart-C-003-M",
    "ContractedCost": "ContractedCost-C-003-M",
    "EffectiveCost": "EffectiveCost-C-003-M",
    "InvoiceIssuerName": "InvoiceIssuerName-C-003-M",
    "ListCost": "ListCost-C-003-M",
    "ProviderName": "ProviderName-C-003-M",
    "PublisherName": "PublisherName-C-003-M",
    "ServiceCategory": "ServiceCategory-C-002-M",
    "ServiceName": "ServiceName-C-003-M",
    # Not null when present (the columns are conditional or recommended).
    "ServiceSubcategory": "ServiceSubcategory-C-002-M",
    "ChargeFrequency": "ChargeFrequency-C-002-M",
    # MUST NOT be null for a charge on an issued or provisional invoice; the validator asks it of every
    # row, and every row of ours stands on one (a provider's, the internal one, or a provisional one).
    "InvoiceId": "InvoiceId-C-005-C",
    # SHOULD NOT be null: the export promises a description on every row.
    "ChargeDescription": "ChargeDescription-C-003-O",
}
DECIMALS = {
    "BilledCost": "BilledCost-C-002-M/-C-004-M",
    "ContractedCost": "ContractedCost-C-002-M/-C-004-M",
    "EffectiveCost": "EffectiveCost-C-002-M/-C-004-M",
    "ListCost": "ListCost-C-002-M/-C-004-M",
    "PricingQuantity": "PricingQuantity-C-002-M/-C-008-M",
    "ConsumedQuantity": "ConsumedQuantity-C-002-M/-C-008-C",
    "ListUnitPrice": "ListUnitPrice-C-002-M",
    "ContractedUnitPrice": "ContractedUnitPrice-C-003-M",
}
DATETIMES = {
    "BillingPeriodStart": "BillingPeriodStart-C-002-M",
    "BillingPeriodEnd": "BillingPeriodEnd-C-002-M",
    "ChargePeriodStart": "ChargePeriodStart-C-002-M",
    "ChargePeriodEnd": "ChargePeriodEnd-C-002-M",
}


def _row(line: int, row: dict) -> list[Violation]:
    found = []

    def fail(column: str, rule: str, message: str) -> None:
        found.append(Violation(line, column, rule, message))

    present = row.keys()
    for column, value in row.items():
        if value is not None and not value.strip():
            fail(column, "NullHandling-A-002-M", "MUST NOT use empty strings or placeholders for a value")
    for column, rule in NOT_NULL.items():
        if column in present and row[column] is None:
            fail(column, rule, f"{column} MUST NOT be null")
    for column, rule in DECIMALS.items():
        if column in present and row[column] is not None and not _is_decimal(row[column]):
            fail(column, f"{rule}, NumericFormat-A-003-M..-011-M", f"{row[column]!r} is not a plain decimal")
    for column, rule in DATETIMES.items():
        if column in present and row[column] is not None and not _is_datetime(row[column]):
            fail(column, f"{rule}, DateTimeFormat-A-003-M", f"{row[column]!r} is not YYYY-MM-DDTHH:mm:ssZ")
    for start, end in (("BillingPeriodStart", "BillingPeriodEnd"), ("ChargePeriodStart", "ChargePeriodEnd")):
        if _is_datetime(row.get(start)) and _is_datetime(row.get(end)) and not row[start] < row[end]:
            fail(end, f"{start}-C-004-M/{end}-C-004-M", "inclusive start MUST come before the exclusive end")

    category = row.get("ChargeCategory")
    correction = row.get("ChargeClass") == "Correction"
    priced = category in ("Usage", "Purchase") and not correction
    if category is not None and category not in CHARGE_CATEGORIES:
        fail("ChargeCategory", "ChargeCategory-C-003-M", f"{category!r} is not one of the allowed values")
    if row.get("ChargeClass") is not None and not correction:
        fail("ChargeClass", "ChargeClass-C-005-C", "ChargeClass MUST be 'Correction' when not null")
    if "ChargeFrequency" in present:
        frequency = row["ChargeFrequency"]
        if frequency is not None and frequency not in CHARGE_FREQUENCIES:
            fail("ChargeFrequency", "ChargeFrequency-C-003-M", f"{frequency!r} is not one of the allowed values")
        if category == "Purchase" and frequency == "Usage-Based":
            fail("ChargeFrequency", "ChargeFrequency-C-004-C", "MUST NOT be 'Usage-Based' when Purchase")

    # EffectiveCost-C-005-C: "MUST be 0 when ChargeCategory is 'Purchase' and the purchase is intended to
    # cover future eligible charges"; the validator asks it of every Purchase row, so does the export.
    if category == "Purchase" and _is_decimal(row.get("EffectiveCost")) and Decimal(row["EffectiveCost"]) != 0:
        fail("EffectiveCost", "EffectiveCost-C-005-C", "MUST be 0 when ChargeCategory is Purchase")

    service_category = row.get("ServiceCategory")
    if service_category is not None and service_category not in SERVICE_SUBCATEGORIES:
        fail("ServiceCategory", "ServiceCategory-C-003-M", f"{service_category!r} is not one of the allowed values")
    if row.get("ServiceSubcategory") is not None:
        parent = SUBCATEGORY_PARENT.get(row["ServiceSubcategory"])
        if parent is None:
            fail("ServiceSubcategory", "ServiceSubcategory-C-003-M", "not one of the allowed values")
        elif parent != service_category:
            fail("ServiceSubcategory", "ServiceSubcategory-C-004-M", f"its one parent ServiceCategory is {parent!r}")

    currency = row.get("BillingCurrency")
    if currency is not None:
        if currency not in ISO_4217:
            fail("BillingCurrency", "BillingCurrency-C-003-M, CurrencyFormat-A-001-C", f"{currency!r} is not ISO 4217")
        elif currency in NOT_NATIONAL:
            fail("BillingCurrency", "BillingCurrency-C-006-M", f"{currency!r} is not a national currency")

    # PricingQuantity-C-004-C: "MUST be null when ChargeCategory is Tax"; -C-005-C: "MUST NOT be null when
    # ChargeCategory is Usage or Purchase and ChargeClass is not Correction".
    if "PricingQuantity" in present:
        if category == "Tax" and row["PricingQuantity"] is not None:
            fail("PricingQuantity", "PricingQuantity-C-004-C", "MUST be null when ChargeCategory is Tax")
        if priced and row["PricingQuantity"] is None:
            fail("PricingQuantity", "PricingQuantity-C-005-C", "MUST NOT be null for Usage or Purchase")
    # PricingUnit-C-005-C / -C-006-C: null exactly when PricingQuantity is null; -C-003-O: SHOULD be UnitFormat.
    if "PricingUnit" in present and (row["PricingUnit"] is None) != (row.get("PricingQuantity") is None):
        fail("PricingUnit", "PricingUnit-C-005-C/-C-006-C", "MUST be null exactly when PricingQuantity is null")
    # ConsumedQuantity-C-004-C: "MUST be null when ChargeCategory is not Usage, or ... CommitmentDiscountStatus
    # is Unused"; -C-006-C: "MUST NOT be null when ChargeClass is not Correction" (Usage, not Unused).
    if "ConsumedQuantity" in present:
        unused = row.get("CommitmentDiscountStatus") == "Unused"
        if (category != "Usage" or unused) and row["ConsumedQuantity"] is not None:
            fail("ConsumedQuantity", "ConsumedQuantity-C-004-C", "MUST be null unless ChargeCategory is Usage")
        if category == "Usage" and not unused and not correction and row["ConsumedQuantity"] is None:
            fail("ConsumedQuantity", "ConsumedQuantity-C-006-C", "MUST NOT be null for Usage")
    if "ConsumedUnit" in present and (row["ConsumedUnit"] is None) != (row.get("ConsumedQuantity") is None):
        fail("ConsumedUnit", "ConsumedUnit-C-005-C/-C-006-C", "MUST be null exactly when ConsumedQuantity is null")
    for column, rule in (("PricingUnit", "PricingUnit-C-003-O"), ("ConsumedUnit", "ConsumedUnit-C-003-O")):
        if row.get(column) is not None:
            problem = _unit_problem(row[column])
            if problem:
                fail(column, f"{rule}, UnitFormat-A-001-M..-004-C", problem)

    # SkuId-C-004-C: "MUST be null when ChargeCategory is Tax"; -C-005-C: "MUST NOT be null when ...
    # Usage or Purchase and ChargeClass is not Correction". SkuMeter-C-004-C / -C-005-C follow SkuId.
    if "SkuId" in present:
        if category == "Tax" and row["SkuId"] is not None:
            fail("SkuId", "SkuId-C-004-C", "MUST be null when ChargeCategory is Tax")
        if priced and row["SkuId"] is None:
            fail("SkuId", "SkuId-C-005-C", "MUST NOT be null for Usage or Purchase")
    if "SkuMeter" in present:
        if row.get("SkuId") is None and row["SkuMeter"] is not None:
            fail("SkuMeter", "SkuMeter-C-004-C", "MUST be null when SkuId is null")
        if row.get("SkuId") is not None and row["SkuMeter"] is None:
            fail("SkuMeter", "SkuMeter-C-005-C", "SHOULD NOT be null when SkuId is not null")

    if row.get("Tags") is not None:
        problem = _key_value_problem(row["Tags"])
        if problem:
            fail("Tags", "Tags-C-001-M, KeyValueFormat-A-001-M..-004-M", problem)

    # BilledCost-C-005-C: "MUST be 0 for charges where payments are received by a third party", which
    # the model decides by ProviderName differing from InvoiceIssuerName.
    if (
        row.get("ProviderName") != row.get("InvoiceIssuerName")
        and _is_decimal(row.get("BilledCost"))
        and Decimal(row["BilledCost"]) != 0
    ):
        fail("BilledCost", "BilledCost-C-005-C", "MUST be 0 when a third party issues the invoice")
    # Without unit prices, a charge unrelated to other charges (e.g. a Credit) has its List, Contracted
    # and Effective cost equal to its BilledCost: ListCost-C-008-C, ContractedCost-C-008-C, EffectiveCost-C-010-C.
    if category == "Credit" and _is_decimal(row.get("BilledCost")):
        for column, rule in (
            ("ListCost", "ListCost-C-008-C"),
            ("ContractedCost", "ContractedCost-C-008-C"),
            ("EffectiveCost", "EffectiveCost-C-010-C"),
        ):
            if _is_decimal(row.get(column)) and Decimal(row[column]) != Decimal(row["BilledCost"]):
                fail(column, rule, "MUST match the BilledCost of a Credit")
    return found


def _is_decimal(value: str | None) -> bool:
    if value is None or not DECIMAL.match(value):
        return False
    try:
        return Decimal(value).is_finite()
    except InvalidOperation:
        return False


def _is_datetime(value: str | None) -> bool:
    if value is None or not DATETIME.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


def _unit_problem(value: str) -> str | None:
    """Why a unit breaks UnitFormat, or None.

    A-001-M/-002-O: one unit of measure in one of the formats, a unit quantity a whole number;
    A-003-M: a listed term keeps its listed capitalization; the rest are capitalized nouns (data
    size units are listed abbreviations).
    """
    if not UNIT.match(value):
        return f"{value!r} is not '<quantity> <Units>', '<Unit>-<Units>' or '<Units>/<Unit>'"
    for word in re.findall(r"[A-Za-z]+", value):
        if word in DATA_SIZE_UNITS or word in LISTED_UNITS:
            continue
        listed = {unit.lower(): unit for unit in LISTED_UNITS | DATA_SIZE_UNITS}
        if word.lower() in listed:
            return f"{word!r} MUST be written {listed[word.lower()]!r}"
        if not word[0].isupper():
            return f"{word!r} SHOULD be a capitalized noun"
    return None


def _key_value_problem(value: str) -> str | None:
    """Why a value breaks KeyValueFormat, or None: A-001-M a serialized JSON object (ECMA 404), A-002-M
    unique keys, A-003-M/-004-M values a number, string, true, false or null, never an object or array."""

    def pairs(items: list[tuple]) -> dict:
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(items)

    try:
        parsed = json.loads(value, object_pairs_hook=pairs)
    except ValueError as exc:
        return f"not a JSON object: {exc}"
    if not isinstance(parsed, dict):
        return "not a JSON object"
    for key, item in parsed.items():
        if isinstance(item, dict | list):
            return f"the value of {key!r} is an object or an array"
    return None
