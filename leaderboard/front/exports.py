"""Downloads of a board (CSV, JSON) and of the references (BibTeX), built from the selectors' rows."""
from __future__ import annotations

import csv
import io

from leaderboard.registry.models import Dataset, Result

CSV_COLUMNS = [
    "rank", "method", "score", "metric", "metric_label", "kind", "origin", "confidence",
    "reference_key", "reference_page_key", "source", "note", "protocol", "protocol_detail", "ci_low", "ci_high",
    "rank_group",
]


def result_record(result: Result) -> dict:
    reference = result.reference
    return {
        "rank": result.rank,
        "method": result.method.name,
        "score": result.score,
        "metric": result.metric.code,
        "metric_label": result.metric_label,
        "kind": result.kind,
        "origin": result.origin,
        "confidence": result.confidence,
        "reference_key": reference.key if reference else "",
        "reference_page_key": reference.page_key if reference else "",
        "source": result.source,
        "note": result.note,
        "protocol": result.protocol or "reported",
        "protocol_detail": result.protocol_detail,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "rank_group": getattr(result, "rank_group", ""),
        "provenance": result.provenance or {},
    }


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """Text a user typed (a submitted model's name) quoted so a spreadsheet shows it, never runs it."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def board_csv(rows: list[Result]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for result in rows:
        writer.writerow({key: spreadsheet_safe(value) for key, value in result_record(result).items()})
    return buffer.getvalue()


def board_document(dataset: Dataset, rows: list[Result]) -> dict:
    metric = dataset.metric
    return {
        "dataset": {
            "slug": dataset.slug,
            "name": dataset.name,
            "task_family": dataset.task_family.slug,
            "protocol": dataset.protocol,
        },
        "metric": {
            "code": metric.code,
            "name": metric.name,
            "unit": metric.unit,
            "higher_is_better": metric.higher_is_better,
        },
        "results": [result_record(result) for result in rows],
    }


def references_bib(references) -> str:
    return "\n".join(reference.bibtex for reference in references if reference.bibtex)


def download_headers(response, filename: str):
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response

