"""Result rows and the one markdown table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .load import LoadResult

PASS, FAIL, INFO, SKIP = "PASS", "FAIL", "info", "skip"


@dataclass
class Row:
    scenario: str
    target: str  # app / store
    verdict: str  # PASS, FAIL, info (a peer, reported beside satchel), skip
    requests: int = 0
    classes: dict[str, int] = field(default_factory=dict)  # 2xx/3xx/4xx/5xx
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    lost_writes: int = 0
    acked: int = 0
    silent_resets: int = 0
    rps: float = 0.0
    notes: str = ""


#: A rule: the reasons a result fails (empty: it passes).
Rule = Callable[[LoadResult], list[str]]


def strict(result: LoadResult) -> list[str]:
    """The load rule: nothing lost, nothing reset, only 2xx/3xx, no error, every client
    verified."""
    reasons = []
    if result.lost_writes:
        reasons.append(f"{result.lost_writes} lost writes")
    if result.silent_resets:
        reasons.append(f"{result.silent_resets} silent resets")
    if result.bad_responses:
        reasons.append(f"{result.bad_responses} responses >= 400")
    if sum(result.errors.values()):
        reasons.append(f"errors {dict(result.errors)}")
    if result.unverified:
        reasons.append(f"{result.unverified} clients unverified")
    if not result.acked:
        reasons.append("no increment acknowledged")
    return reasons


def row_from(
    scenario: str,
    target: str,
    result: LoadResult,
    rule: Rule | None = strict,
    notes: str = "",
) -> Row:
    """A row for ``result``; ``rule=None`` reports it without judging it (a peer)."""
    reasons = rule(result) if rule is not None else []
    verdict = INFO if rule is None else (FAIL if reasons else PASS)
    if rule is None and result.lost_writes:
        share = 100 * result.lost_writes / max(result.acked, 1)
        notes = f"lost {share:.0f}% of acknowledged writes; {notes}".rstrip("; ")
    if result.errors:
        notes = f"{notes}; errors {dict(result.errors)}".lstrip("; ")
    if result.cut_logins:
        notes = (
            f"{notes}; {result.cut_logins} logins cut with their connection: those clients "
            f"were logged out ({result.cut_lost} increments out of their reach)"
        ).lstrip("; ")
    if result.error_bodies:
        body, n = result.error_bodies.most_common(1)[0]
        notes = f"{notes}; {n} x {body.strip()[:80]!r}".lstrip("; ")
    if reasons:
        notes = f"{notes}; FAIL: {', '.join(reasons)}".lstrip("; ")
    return Row(
        scenario=scenario,
        target=target,
        verdict=verdict,
        requests=result.requests,
        classes=result.by_class(),
        errors=sum(result.errors.values()),
        p50_ms=result.percentile_ms(0.50),
        p99_ms=result.percentile_ms(0.99),
        lost_writes=result.lost_writes,
        acked=result.acked,
        silent_resets=result.silent_resets,
        rps=result.rps,
        notes=notes,
    )


def table(rows: list[Row]) -> str:
    header = [
        "scenario", "app / store", "requests", "req/s", "2xx", "3xx", "4xx", "5xx", "errors",
        "p50 ms", "p99 ms", "lost writes / acked", "silent resets", "result", "notes",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r.scenario,
            r.target,
            f"{r.requests:,}",
            f"{r.rps:,.0f}",
            *(f"{r.classes.get(c, 0):,}" for c in ("2xx", "3xx", "4xx", "5xx")),
            f"{r.errors:,}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.lost_writes:,} / {r.acked:,}",
            f"{r.silent_resets:,}",
            r.verdict,
            r.notes.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
