"""Load the 2014 snapshot (fixtures/snapshot/) into the registry, idempotently.

`snapshot.yaml` holds task families, metrics, datasets, result rows and missing cells;
`references.bib` the papers; `benchmarks.yaml` Shelfmark's own additions (engine benchmark names and
demo benchmarks). Rows are matched on natural keys (dataset slug + method name + reference), so a
second load changes nothing. Each result's history (contributions.Revision) starts with "KTH page, 2014",
and a row the files correct later gets a revision saying what changed. Any bad row raises `SnapshotError`
naming it, and the caller's transaction leaves nothing half-written.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import bibtexparser
import yaml
from bibtexparser.bibdatabase import BibDatabase
from bibtexparser.bparser import BibTexParser
from bibtexparser.bwriter import BibTexWriter
from bibtexparser.latexenc import latex_to_unicode
from django.db import transaction

from .models import (
    Dataset,
    HistoricalDownload,
    LeaderboardVersion,
    Method,
    Metric,
    MissingCell,
    Reference,
    Result,
    TaskFamily,
)
from leaderboard.boards.services import publish_version
from leaderboard.contributions.models import SNAPSHOT_REASON, Revision

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ten times faster

KINDS = {
    "non-CNN": Result.Kind.NON_CNN,
    "off-the-shelf CNN": Result.Kind.OFF_THE_SHELF,
    "fine-tuned/specialized CNN": Result.Kind.SPECIALIZED,
}
CONFIDENCES = {choice.value for choice in Result.Confidence}
# The page's own reference labels, in the page's order; outside papers follow them.
PAGE_KEYS = ["[*]", "[+]"] + [f"[{n}]" for n in range(15)]
OUTSIDE_ORDER_START = 100
# Which dataset each of the page's downloads belongs to (the page names it in the description).
DOWNLOAD_DATASETS = {"MIT67": "mit67", "Holidays": "holidays"}


class SnapshotError(Exception):
    """The snapshot files are inconsistent; the message names the offending row."""


@dataclass
class LoadReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    versions_published: int = 0

    def count(self, what: str, created: bool, changed: bool = True) -> None:
        if created:
            self.created[what] = self.created.get(what, 0) + 1
        elif changed:
            self.updated[what] = self.updated.get(what, 0) + 1

    @property
    def changed_anything(self) -> bool:
        return bool(self.created or self.updated or self.removed or self.versions_published)

    def summary(self) -> str:
        def fmt(counts):
            return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing"

        return (
            f"created {fmt(self.created)}; updated {fmt(self.updated)}; removed {fmt(self.removed)}; "
            f"published {self.versions_published} version(s)"
        )


def _sync(model, report: LoadReport, what: str, lookup: dict, values: dict, changes: dict | None = None):
    """update_or_create that writes only when a value differs, so a reload touches nothing. `changes`, when
    given, receives {field: [before, after]} of an existing row that changed."""
    obj = model.objects.filter(**lookup).first()
    if obj is None:
        obj = model.objects.create(**lookup, **values)
        report.count(what, created=True)
        return obj
    changed = [name for name, value in values.items() if getattr(obj, _attname(model, name)) != _raw(value)]
    if changed:
        if changes is not None:
            changes.update({name: [getattr(obj, _attname(model, name)), _raw(values[name])] for name in changed})
        for name in changed:
            setattr(obj, name, values[name])
        obj.save(update_fields=changed)
        report.count(what, created=False)
    return obj


def _attname(model, name: str) -> str:
    return model._meta.get_field(name).attname


def _raw(value):
    """The value as stored in the row: a model instance compares by its primary key."""
    return value.pk if hasattr(value, "_meta") else value


def read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=SafeLoader) or {}
    except FileNotFoundError:
        raise SnapshotError(f"{path} not found") from None
    except yaml.YAMLError as error:
        raise SnapshotError(f"{path} is not valid YAML: {error}") from error


def read_bib(path: Path) -> BibDatabase:
    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        raise SnapshotError(f"{path} not found") from None
    return _parse_bib(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parse_bib(path: str, mtime_ns: int, size: int) -> BibDatabase:
    """Parsing is slow (about a second); the cache key changes whenever the file does. Callers only read."""
    parser = BibTexParser(common_strings=True, ignore_nonstandard_types=False)
    with open(path, encoding="utf-8") as handle:
        return bibtexparser.load(handle, parser=parser)


def entry_bibtex(entry: dict) -> str:
    """One entry as BibTeX text, fields in a fixed, readable order."""
    database = BibDatabase()
    database.entries = [entry]
    writer = BibTexWriter()
    writer.indent = "  "
    writer.display_order = ["author", "title", "journal", "booktitle", "year"]
    return writer.write(database).strip() + "\n"


def plain_text(value: str) -> str:
    """LaTeX field text for display: accents decoded, protective braces dropped, spaces collapsed."""
    text = latex_to_unicode(value or "")
    text = text.replace("{", "").replace("}", "").replace("--", "–").replace("~", " ")
    return re.sub(r"\s+", " ", text).strip()


def display_authors(value: str) -> str:
    """'Last, First and Last2, First2' -> 'First Last, First2 Last2'."""
    names = []
    for name in re.split(r"\s+and\s+", plain_text(value)):
        if "," in name:
            last, first = [part.strip() for part in name.split(",", 1)]
            name = f"{first} {last}".strip()
        if name:
            names.append(name)
    return ", ".join(names)


def web_url(text: str) -> str:
    """`text` if it is an http(s) address with a host, else "" (a javascript: or data: URL is never a link)."""
    text = (text or "").strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    return text if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def reference_url(fields: dict) -> str:
    """The reference's link: its BibTeX url when that is a web address, else its DOI's or arXiv's page."""
    if url := web_url(fields.get("url", "")):
        return url
    if fields.get("doi"):
        return f"https://doi.org/{fields['doi']}"
    if fields.get("eprint") and fields.get("archiveprefix", "").lower() == "arxiv":
        return f"https://arxiv.org/abs/{fields['eprint']}"
    return ""


def load_references(bib: BibDatabase, page_keys: dict[str, str], report: LoadReport) -> dict[str, Reference]:
    key_to_page = {}
    for page_key, bib_key in page_keys.items():
        if page_key not in PAGE_KEYS:
            raise SnapshotError(f"meta.references: unknown page key {page_key!r} (expected one of {PAGE_KEYS})")
        key_to_page[bib_key] = page_key
    known = {entry["ID"] for entry in bib.entries}
    for page_key, bib_key in page_keys.items():
        if bib_key not in known:
            raise SnapshotError(f"meta.references: {page_key} names {bib_key!r}, which is not in references.bib")

    references = {}
    for position, entry in enumerate(bib.entries):
        fields = {name: value for name, value in entry.items() if name not in ("ID", "ENTRYTYPE")}
        page_key = key_to_page.get(entry["ID"], "")
        order = PAGE_KEYS.index(page_key) if page_key else OUTSIDE_ORDER_START + position
        venue = next(
            (fields[name] for name in ("journal", "booktitle", "howpublished", "institution", "publisher")
             if fields.get(name)), ""
        )
        references[entry["ID"]] = _sync(Reference, report, "references", {"key": entry["ID"]}, {
            "page_key": page_key,
            "entry_type": entry["ENTRYTYPE"],
            "fields": fields,
            "title": plain_text(fields.get("title", "")),
            "authors": display_authors(fields.get("author", "")),
            "year": fields.get("year", ""),
            "venue": plain_text(venue)[:300],
            "url": reference_url(fields),
            "bibtex": entry_bibtex(entry),
            "order": order,
        })
    return references


def load_metrics(metrics: dict, report: LoadReport) -> dict[str, Metric]:
    loaded = {}
    for code, spec in metrics.items():
        if isinstance(spec, str):
            spec = {"description": spec}
        loaded[code] = _sync(Metric, report, "metrics", {"code": code}, {
            "name": spec.get("name", code),
            "description": spec.get("description", ""),
            "higher_is_better": bool(spec.get("higher_is_better", True)),
            "unit": spec.get("unit", "%"),
            "engine_scale": float(spec.get("engine_scale", 100.0)),
        })
    return loaded


def _images(spec: dict) -> dict:
    images = spec.get("images") or {}
    return {str(name): value for name, value in images.items()}


def _protocol(spec: dict) -> str:
    """The protocol text: the explicit field, else what `images:` and annotations say about the split."""
    if spec.get("protocol"):
        return str(spec["protocol"])
    images = spec.get("images") or {}
    parts = [str(images[name]) for name in ("protocol", "note") if images.get(name)]
    if spec.get("annotations"):
        parts.append(f"annotations: {spec['annotations']}")
    if spec.get("attributes"):
        parts.append(f"{spec['attributes']} attributes")
    return "; ".join(parts)


def _classes(spec: dict) -> int | None:
    """Class count when it is a plain number; descriptive counts ("10 actions (+ 'other')") stay in protocol."""
    value = spec.get("classes")
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
        return int(value)
    return None


def load_datasets(
    specs: list[dict], families: dict[str, TaskFamily], metrics: dict[str, Metric], engine: dict[str, str],
    report: LoadReport, *, demo: bool = False, first_order: int = 0,
) -> dict[str, Dataset]:
    loaded = {}
    section = "demo_datasets" if demo else "datasets"
    for position, spec in enumerate(specs):
        slug = spec.get("id")
        where = f"{section}[{position}] ({slug or 'no id'})"
        if not slug:
            raise SnapshotError(f"{where}: missing id")
        if spec.get("task_family") not in families:
            raise SnapshotError(f"{where}: unknown task family {spec.get('task_family')!r}")
        if spec.get("metric") not in metrics:
            raise SnapshotError(f"{where}: unknown metric {spec.get('metric')!r}")
        protocol = _protocol(spec)
        if isinstance(spec.get("classes"), str) and _classes(spec) is None:
            protocol = "; ".join(filter(None, [f"classes: {spec['classes']}", protocol]))
        loaded[slug] = _sync(Dataset, report, "datasets", {"slug": slug}, {
            "name": spec.get("name", slug),
            "task_family": families[spec["task_family"]],
            "metric": metrics[spec["metric"]],
            "classes": _classes(spec),
            "images": _images(spec),
            "protocol": protocol,
            "official_files": list(spec.get("official_files") or []),
            "engine_benchmark": spec.get("engine_benchmark") or engine.get(slug, ""),
            "is_demo": demo,
            "order": first_order + position,
        })
    return loaded


def _reference_for(ref: str, page_keys: dict[str, str], references: dict[str, Reference], where: str) -> Reference:
    if ref in page_keys:
        key = page_keys[ref]
    elif ref.startswith("outside:"):
        key = ref.split(":", 1)[1]
    else:
        raise SnapshotError(f"{where}: unknown reference {ref!r} (expected a page key like '[1]' or 'outside:Key')")
    if key not in references:
        raise SnapshotError(f"{where}: unknown reference {ref!r} ({key!r} is not in references.bib)")
    return references[key]


def load_results(
    rows: list[dict], datasets: dict[str, Dataset], metrics: dict[str, Metric], page_keys: dict[str, str],
    references: dict[str, Reference], report: LoadReport,
) -> set[int]:
    kept = set()
    for position, row in enumerate(rows):
        where = f"results[{position}] (dataset {row.get('dataset')!r}, method {row.get('method')!r})"
        dataset = datasets.get(row.get("dataset"))
        if dataset is None:
            raise SnapshotError(f"{where}: unknown dataset {row.get('dataset')!r}")
        if not row.get("method"):
            raise SnapshotError(f"{where}: missing method")
        if row.get("metric") not in metrics:
            raise SnapshotError(f"{where}: unknown metric {row.get('metric')!r}")
        if row.get("kind") not in KINDS:
            raise SnapshotError(f"{where}: unknown kind {row.get('kind')!r} (expected one of {list(KINDS)})")
        confidence = row.get("confidence", "high")
        if confidence not in CONFIDENCES:
            raise SnapshotError(f"{where}: unknown confidence {confidence!r}")
        if isinstance(row.get("score"), bool) or not isinstance(row.get("score"), (int, float)):
            raise SnapshotError(f"{where}: score {row.get('score')!r} is not a number")
        reference = _reference_for(str(row.get("ref", "")), page_keys, references, where)

        method = _sync(Method, report, "methods", {"name": row["method"], "reference": reference}, {})
        changes = {}
        result = _sync(Result, report, "results",
                       {"dataset": dataset, "method": method, "reference": reference, "origin": Result.Origin.SNAPSHOT},
                       {
                           "score": float(row["score"]),
                           "metric": metrics[row["metric"]],
                           "metric_label": row.get("metric_label", ""),
                           "kind": KINDS[row["kind"]],
                           "source": str(row.get("source", "")),
                           "confidence": confidence,
                           "note": row.get("note", ""),
                           "is_public": True,
                       }, changes)
        if result.pk in kept:
            raise SnapshotError(f"{where}: duplicate of an earlier row (same dataset, method and reference)")
        kept.add(result.pk)
        if changes:
            Revision.objects.create(result=result, action=Revision.Action.CORRECTED, changes=changes,
                                    reason="the snapshot files were corrected (fixtures/snapshot)")
            report.count("revisions", created=True)
    return kept


def load_revisions(kept: set[int], report: LoadReport) -> None:
    """Every snapshot row's history starts with the 2014 page; rows loaded before histories existed get it too."""
    started = Revision.objects.filter(action=Revision.Action.SNAPSHOT, result__isnull=False).values("result")
    missing = Result.objects.filter(pk__in=kept).exclude(pk__in=started).values_list("pk", flat=True)
    created = Revision.objects.bulk_create(
        [Revision(result_id=pk, action=Revision.Action.SNAPSHOT, reason=SNAPSHOT_REASON) for pk in missing])
    if created:
        report.created["revisions"] = report.created.get("revisions", 0) + len(created)


def load_missing(rows: list[dict], datasets, page_keys, references, report: LoadReport) -> set[int]:
    kept = set()
    for position, row in enumerate(rows):
        where = f"missing[{position}] ({row.get('what')!r})"
        dataset = reference = None
        if row.get("dataset"):
            dataset = datasets.get(row["dataset"])
            if dataset is None:
                raise SnapshotError(f"{where}: unknown dataset {row['dataset']!r}")
        if row.get("ref"):
            reference = _reference_for(str(row["ref"]), page_keys, references, where)
        if dataset is None and reference is None:
            raise SnapshotError(f"{where}: names neither a dataset nor a reference")
        kind = row.get("kind", "")
        if kind and kind not in KINDS:
            raise SnapshotError(f"{where}: unknown kind {kind!r}")
        cell = _sync(MissingCell, report, "missing cells",
                     {"dataset": dataset, "reference": reference, "what": row.get("what", "")},
                     {"kind": KINDS.get(kind, ""), "reason": row.get("reason", "")})
        kept.add(cell.pk)
    return kept


def load_downloads(items: list[dict], report: LoadReport) -> set[int]:
    kept = set()
    for item in items:
        slug = next((slug for word, slug in DOWNLOAD_DATASETS.items() if word in item["what"]), None)
        dataset = Dataset.objects.filter(slug=slug).first() if slug else None
        download = _sync(HistoricalDownload, report, "downloads", {"what": item["what"]},
                         {"size": str(item.get("size", "")), "dataset": dataset})
        kept.add(download.pk)
    return kept


def _prune(queryset, kept: set[int], what: str, report: LoadReport) -> None:
    """Rows the files no longer contain are removed: the snapshot files own them."""
    stale = queryset.exclude(pk__in=kept)
    count = stale.count()
    if count:
        stale.delete()
        report.removed[what] = count


@transaction.atomic
def load_snapshot(directory: Path) -> LoadReport:
    """Load `directory`/snapshot.yaml, references.bib and (if present) benchmarks.yaml."""
    directory = Path(directory)
    snapshot = read_yaml(directory / "snapshot.yaml")
    bib = read_bib(directory / "references.bib")
    extras = read_yaml(directory / "benchmarks.yaml") if (directory / "benchmarks.yaml").exists() else {}
    report = LoadReport()

    meta = snapshot.get("meta") or {}
    page_keys = {str(key): value for key, value in (meta.get("references") or {}).items()}
    references = load_references(bib, page_keys, report)
    metrics = load_metrics(snapshot.get("metrics") or {}, report)
    families = {}
    for position, spec in enumerate(snapshot.get("task_families") or []):
        families[spec["id"]] = _sync(TaskFamily, report, "task families", {"slug": spec["id"]},
                                     {"name": spec["name"], "order": position})
    specs = snapshot.get("datasets") or []
    engine = extras.get("engine_benchmarks") or {}
    for slug in engine:
        if slug not in {spec.get("id") for spec in specs}:
            raise SnapshotError(f"benchmarks.yaml engine_benchmarks: unknown dataset {slug!r}")
    datasets = load_datasets(specs, families, metrics, engine, report)
    datasets.update(load_datasets(extras.get("demo_datasets") or [], families, metrics, {}, report,
                                  demo=True, first_order=len(specs)))
    kept_results = load_results(snapshot.get("results") or [], datasets, metrics, page_keys, references, report)
    load_revisions(kept_results, report)
    kept_missing = load_missing(snapshot.get("missing") or [], datasets, page_keys, references, report)
    kept_downloads = load_downloads(meta.get("downloads_listed_on_page") or [], report)

    _prune(Result.objects.filter(origin=Result.Origin.SNAPSHOT), kept_results, "results", report)
    _prune(MissingCell.objects.all(), kept_missing, "missing cells", report)
    _prune(HistoricalDownload.objects.all(), kept_downloads, "downloads", report)

    # Version 0 of every board is the snapshot as loaded; later loads never rewrite a published version.
    for dataset in datasets.values():
        if not LeaderboardVersion.objects.filter(dataset=dataset, number=0).exists():
            publish_version(dataset, note="the 2014 KTH snapshot", number=0)
            report.versions_published += 1
    return report
