"""A CSV batch of proposals, read and checked row by row before anything is stored.

Each row goes through the same form as a single proposal (forms.ProposalForm), so one set of rules and
limits holds for both. Row numbers are a spreadsheet's: the header is row 1. The paper column may name a
paper by the key of an entry in the BibTeX file uploaded with the CSV, or in another row's bibtex cell.

BibTeX is slow to parse (a brace-heavy entry of 20,000 characters takes over half a second), so one batch
parses each distinct text once (BibtexParses: the rows naming an entry share its parse) and at most
MAX_BATCH_BIBTEX_CHARS characters of it in all.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from leaderboard.registry.models import Dataset, Result
from leaderboard.registry.snapshot import entry_bibtex

from .forms import ProposalForm
from .models import Proposal
from .papers import MAX_BIBTEX_CHARS, PaperError, check_length, entry_identifiers, normalise_arxiv, normalise_doi
from .papers import parse_bibtex as parse_bibtex_text
from .selectors import duplicate_of
from .services import ProposalData

MAX_CSV_BYTES = 256 * 1024
MAX_BIB_BYTES = 64 * 1024
MAX_ROWS = 200
MAX_BATCH_BIBTEX_CHARS = 100_000   # parsed per upload: the .bib and the distinct bibtex cells together
REQUIRED = ("benchmark", "method", "score", "kind", "protocol", "location")
OPTIONAL = ("paper", "bibtex", "title", "note")
FORM_FIELDS = {"benchmark": "dataset", "method": "method_name", "score": "score", "kind": "kind",
               "protocol": "paper_protocol", "location": "location", "paper": "paper", "bibtex": "bibtex",
               "title": "paper_title", "note": "note"}
COLUMN_OF = {form_field: column for column, form_field in FORM_FIELDS.items()}


def _word(text: str) -> str:
    return re.sub(r"[\s_\-+/]+", " ", (text or "").strip().lower()).strip()


def _choice_lookup(choices, aliases: dict[str, str]) -> dict[str, str]:
    lookup = {_word(value): value for value, _ in choices} | {_word(label): value for value, label in choices}
    return lookup | {_word(alias): value for alias, value in aliases.items()}


KINDS = _choice_lookup(Result.Kind.choices, {"non-CNN": "non_cnn", "off-the-shelf": "off_the_shelf",
                                             "fine-tuned": "specialized", "fine-tuned CNN": "specialized",
                                             "specialized CNN": "specialized"})
PROTOCOLS = _choice_lookup(Proposal.PaperProtocol.choices, {"SVM": "svm", "linear SVM": "svm", "k-NN": "knn",
                                                            "linear probe": "linear_probe", "fine-tuned": "fine_tuned",
                                                            "extra data": "extra_data"})


@dataclass
class BatchRow:
    number: int                  # as a spreadsheet numbers it: the header is row 1
    cells: dict[str, str]
    data: ProposalData | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.data is not None and not self.errors


@dataclass
class Batch:
    rows: list[BatchRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)     # about the whole file: nothing in it is stored

    @property
    def good(self) -> list[BatchRow]:
        return [row for row in self.rows if row.ok] if not self.errors else []

    @property
    def bad(self) -> list[BatchRow]:
        return [row for row in self.rows if not row.ok]


class BibtexParses:
    """papers.parse_bibtex for one batch: each distinct text parsed once (its entries, or its error, kept
    for the next row that brings it), and at most `budget` characters parsed in all; past it every new
    text is refused and `refusal` says why (an error of the whole file)."""

    def __init__(self, budget: int | None = None):
        self.budget = MAX_BATCH_BIBTEX_CHARS if budget is None else budget
        self.spent = 0
        self.refusal = ""
        self.parsed: dict[str, list[dict] | PaperError] = {}

    def seed(self, text: str, entries: list[dict]) -> None:
        """`text`'s entries are known already (an entry of the .bib, written out again): no need to parse it."""
        self.parsed.setdefault(text, entries)

    def __call__(self, text: str, *, limit: int = MAX_BIBTEX_CHARS) -> list[dict]:
        check_length(text, limit)
        if text not in self.parsed:
            if self.spent + len(text) > self.budget:
                self.refusal = (f"The BibTeX of this upload (the .bib file and the bibtex cells, each distinct "
                                f"entry once) passes {self.budget:,} characters; at most {self.budget:,} are read "
                                "per upload: send the rest in another batch.")
                raise PaperError("bibtex", self.refusal)
            self.spent += len(text)
            try:
                self.parsed[text] = parse_bibtex_text(text, limit=limit)
            except PaperError as error:
                self.parsed[text] = error
        done = self.parsed[text]
        if isinstance(done, PaperError):
            raise PaperError(done.field, str(done))
        return [dict(entry) for entry in done]    # copies: no row changes another's


def decode(upload, limit: int, what: str) -> tuple[str, str]:
    """An uploaded file's text and an error ("" when it reads): at most `limit` bytes of UTF-8."""
    if upload.size > limit:
        return "", f"The {what} is {upload.size:,} bytes; at most {limit:,} are read."
    raw = upload.read(limit + 1)
    try:
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError as error:
        return "", f"The {what} is not UTF-8 text (byte {error.start + 1} is not): save it as UTF-8 CSV."


def _bib_texts(bib_text: str, errors: list[str], parse: BibtexParses) -> dict[str, str]:
    """The entries of the uploaded .bib, each by its key, DOI and arXiv id, as one entry's BibTeX text (its
    parse handed to `parse`, for the rows that name it)."""
    try:
        entries = parse(bib_text, limit=MAX_BIB_BYTES)
    except PaperError as error:
        errors.append(f"BibTeX file: {error}")
        return {}
    texts = {}
    for entry in entries:
        text = entry_bibtex(entry).strip()     # as a row's form reads it (papers.read_paper strips it)
        parse.seed(text, [entry])
        doi, arxiv = entry_identifiers(entry)
        texts.update({name: text for name in (entry["ID"], doi and f"doi:{doi}", arxiv and f"arxiv:{arxiv}") if name})
    return texts


def _paper_name(cell: str) -> str:
    doi, arxiv = normalise_doi(cell), normalise_arxiv(cell)
    return f"doi:{doi}" if doi else f"arxiv:{arxiv}" if arxiv else cell.strip()


def _benchmark(cell: str, datasets: dict[str, str]) -> str:
    return datasets.get(cell.strip().lower(), cell.strip())


def read_batch(csv_text: str, bib_text: str = "", contributor=None) -> Batch:
    """Read and check every row; `Batch.errors` holds what spoils the whole file, each row its own errors.
    With `contributor`, numbers already on the board or among their proposals are named as bad rows too."""
    batch = Batch()
    parse = BibtexParses()
    texts = _bib_texts(bib_text, batch.errors, parse) if bib_text.strip() else {}
    sample = csv_text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample else csv.excel
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(csv_text), dialect)
    try:
        header = [_word(name).replace(" ", "_") for name in next(reader, [])]
        if not header:
            batch.errors.append("The CSV file is empty: its first row names the columns.")
            return batch
        missing = [name for name in REQUIRED if name not in header]
        unknown = [name for name in header if name not in REQUIRED + OPTIONAL]
        if missing:
            batch.errors.append(f"The header lacks the column(s) {', '.join(missing)} (it has {', '.join(header)}).")
        if unknown:
            batch.errors.append(f"Unknown column(s) {', '.join(unknown)}; the columns are "
                                f"{', '.join(REQUIRED + OPTIONAL)}.")
        if "paper" not in header and "bibtex" not in header:
            batch.errors.append("The header needs a paper column or a bibtex column (or both).")
        if batch.errors:
            return batch
        for number, values in enumerate(reader, start=2):
            if not any(value.strip() for value in values):
                continue
            if len(batch.rows) == MAX_ROWS:
                batch.errors.append(f"More than {MAX_ROWS} rows: send the rest in another batch.")
                return batch
            row = BatchRow(number, dict(zip(header, values)))
            if len(values) != len(header):
                row.errors.append(f"{len(values)} cells where the header has {len(header)}.")
            batch.rows.append(row)
    except csv.Error as error:
        batch.errors.append(f"The CSV file could not be read past row {reader.line_num}: {error}.")
        return batch
    _check_rows(batch, texts, parse)
    if parse.refusal:
        batch.errors.append(parse.refusal)
        return batch
    if contributor is not None:
        _already_known(contributor, batch)
    return batch


def _check_rows(batch: Batch, texts: dict[str, str], parse: BibtexParses) -> None:
    in_rows = {}    # BibTeX given in one row's cell, for other rows to name by key
    for row in batch.rows:
        if row.cells.get("bibtex", "").strip():
            try:
                entries = parse(row.cells["bibtex"].strip())
            except PaperError:
                continue    # reported with the row itself
            if len(entries) == 1:
                doi, arxiv = entry_identifiers(entries[0])
                for name in (entries[0]["ID"], doi and f"doi:{doi}", arxiv and f"arxiv:{arxiv}"):
                    if name:
                        in_rows.setdefault(name, row.cells["bibtex"].strip())
    slugs = Dataset.objects.values_list("slug", "engine_benchmark", "name")
    datasets = {name.lower(): slug for slug, benchmark, title in slugs for name in (slug, benchmark, title) if name}
    seen = {}
    for row in batch.rows:
        if row.errors:
            continue
        cells = {name: (value or "").strip() for name, value in row.cells.items()}
        data = {form_field: cells.get(column, "") for column, form_field in FORM_FIELDS.items()}
        data["dataset"] = _benchmark(data["dataset"], datasets)
        data["kind"] = KINDS.get(_word(data["kind"]), data["kind"])
        data["paper_protocol"] = PROTOCOLS.get(_word(data["paper_protocol"]), data["paper_protocol"])
        if not data["bibtex"] and data["paper"]:
            name = _paper_name(data["paper"])
            data["bibtex"] = texts.get(name) or in_rows.get(name, "")
            if data["bibtex"] and not (name.startswith(("doi:", "arxiv:"))):
                data["paper"] = ""    # the key was the entry's; the entry itself names the paper now
        form = ProposalForm(data, parse_bibtex=parse)
        if not form.is_valid():
            row.errors.extend(_messages(form))
            continue
        row.data = form.proposal_data(batch_row=row.number)
        same = (row.data.dataset.pk, row.data.method_name.casefold(), row.data.score)
        if same in seen:
            row.errors.append(f"The same number as row {seen[same]} (benchmark, method and score).")
            row.data = None
        else:
            seen[same] = row.number


def _messages(form: ProposalForm) -> list[str]:
    """Each form error, named by the CSV column it came from."""
    messages = []
    for name, errors in form.errors.items():
        column = COLUMN_OF.get(name, "")
        for error in errors:
            messages.append(f"{column}: {error}" if column else error)
    return messages


def _already_known(contributor, batch: Batch) -> None:
    """Rows already on their board, or among the contributor's proposals, are bad rows too (named, not stored)."""
    for row in batch.good:
        if reason := duplicate_of(contributor, row.data):
            row.errors.append(reason)
            row.data = None
