"""Approved statements to render: search's (CC-110) from the hand-computed October, and the
same statement grown to hundreds of lines, as a big cost center's month would be."""

from decimal import Decimal

from chargeback.choices import StatementLineKind
from chargeback.models import Statement, StatementFeature, StatementLine
from chargeback.services.statements import statement_approve, statement_submit, statements_build
from tests.chargeback.close_world import MONTH

__all__ = ["MONTH", "approved_statement", "grow_statement"]

PROVIDERS = (("openai", "gpt-4o-2024-08-06"), ("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-pro"))
MODALITIES = (
    ("text", "input_token"),
    ("image", "image"),
    ("audio", "audio_input_second"),
    ("embedding", "embedding_token"),
)
ENVIRONMENTS = ("production", "production", "production", "eval", "internal", "staging")


def grow_statement(statement: Statement, lines: int) -> Statement:
    """Add `lines` charge lines to a statement still in review (features, providers,
    modalities and environments spread over them) and bring its totals along."""
    added = []
    for i in range(lines):
        provider, model = PROVIDERS[i % len(PROVIDERS)]
        modality, unit = MODALITIES[(i // 3) % len(MODALITIES)]
        added.append(
            StatementLine(
                statement=statement,
                kind=StatementLineKind.CHARGE,
                source_period=statement.period,
                provider=provider,
                model=model,
                modality=modality,
                team=f"team-{i % 9:02d}",
                feature=f"feature-{i % 37:02d}-{'long-descriptive-use-case-name' if i % 11 == 0 else 'chat'}",
                environment=ENVIRONMENTS[i % len(ENVIRONMENTS)],
                treatment="chargeback" if i % 7 else "showback",
                category="usage",
                method="direct",
                unit=unit,
                quantity=Decimal(1000 + i * 137),
                line_count=10 + i,
                amount=Decimal(f"{(i * 7919) % 100000 / 100 + 1:.2f}"),
            )
        )
    StatementLine.objects.bulk_create(added)
    keys = {(x.team, x.feature, x.environment) for x in added}
    StatementFeature.objects.bulk_create(
        StatementFeature(statement=statement, team=t, feature=f, environment=e, requests=500 + len(f), traces=90)
        for t, f, e in sorted(keys)
    )
    charged = sum((x.amount for x in added if x.treatment == "chargeback"), Decimal(0))
    shown = sum((x.amount for x in added if x.treatment == "showback"), Decimal(0))
    statement.total += charged + shown
    statement.chargeback += charged
    statement.showback += shown
    statement.line_count += lines
    statement.save()
    return statement


def approved_statement(world: dict, code: str = "CC-110", *, extra_lines: int = 0) -> Statement:
    """The month's statements built and `code`'s signed off (grown first when asked)."""
    statements_build(period=MONTH, actor=world["analyst"])
    statement = Statement.objects.get(period=str(MONTH), cost_center__code=code)
    statement = statement_submit(statement=statement, actor=world["analyst"])
    if extra_lines:
        statement = grow_statement(statement, extra_lines)
    return statement_approve(statement=statement, actor=world["approver"])
