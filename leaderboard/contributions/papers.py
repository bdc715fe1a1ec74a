"""A paper as a contributor names it: a DOI, an arXiv id or a BibTeX entry, normalised so that one paper
is one `Reference` however it is written ("https://doi.org/10.1109/CVPR.2014.81" and "doi:10.1109/cvpr.2014.81";
"arXiv:2304.07193v2" and "2304.07193"). BibTeX is read with bibtexparser (the parser the snapshot loader
uses), never with regular expressions. No database access here: matching is selectors.known_reference.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import bibtexparser
from bibtexparser.bparser import BibTexParser

from leaderboard.registry.snapshot import display_authors, entry_bibtex, plain_text

MAX_BIBTEX_CHARS = 20_000       # one entry; a .bib beside a CSV batch has its own limit
MAX_TITLE_CHARS = 500
DOI = re.compile(r"10\.\d{4,9}/\S{1,180}")
DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi.org/",
                "dx.doi.org/", "doi:")
# arXiv identifiers (https://info.arxiv.org/help/arxiv_identifier.html): YYMM.NNNNN since 2015, YYMM.NNNN
# from April 2007, and archive(.SUBJECT)/YYMMNNN before; a version suffix (v2) names one version of the paper.
NEW_ARXIV = re.compile(r"(\d{4}\.\d{4,5})(?:v\d+)?")
OLD_ARXIV = re.compile(r"([a-z][a-z-]*)(?:\.[a-z]{2})?/(\d{7})(?:v\d+)?", re.IGNORECASE)
ARXIV_PREFIXES = ("https://arxiv.org/abs/", "http://arxiv.org/abs/", "https://arxiv.org/pdf/", "http://arxiv.org/pdf/",
                  "arxiv.org/abs/", "arxiv.org/pdf/", "arxiv:")
BIBTEX_KEY = re.compile(r"[A-Za-z0-9_:.+/\-]{1,100}")
MAX_ENTRY_TYPE_CHARS = 32       # Reference.entry_type
ENTRY_TYPE = re.compile(rf"[A-Za-z]{{1,{MAX_ENTRY_TYPE_CHARS}}}")


class PaperError(ValueError):
    """The paper could not be read; `field` is the form field to blame ("paper", "bibtex", "paper_title")."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def normalise_doi(text: str) -> str:
    """'https://doi.org/10.1109/CVPR.2014.81' -> '10.1109/cvpr.2014.81' (DOIs are case-insensitive);
    '' when `text` is not a DOI."""
    value = (text or "").strip()
    lowered = value.lower()
    for prefix in DOI_PREFIXES:
        if lowered.startswith(prefix):
            value = value[len(prefix):].strip()
            break
    value = value.lower()
    return value if DOI.fullmatch(value) else ""


def normalise_arxiv(text: str) -> str:
    """'arXiv:2304.07193v2' -> '2304.07193'; 'math.GT/0309136v1' -> 'math/0309136' (the subject class is
    not part of an old-style id); '' when `text` is not an arXiv id."""
    value = (text or "").strip()
    lowered = value.lower()
    for prefix in ARXIV_PREFIXES:
        if lowered.startswith(prefix):
            value = value[len(prefix):].strip()
            break
    value = value.removesuffix(".pdf")
    if match := NEW_ARXIV.fullmatch(value):
        return match.group(1)
    if match := OLD_ARXIV.fullmatch(value):
        return f"{match.group(1).lower()}/{match.group(2)}"
    return ""


def arxiv_from_doi(doi: str) -> str:
    """arXiv's own DOIs (10.48550/arXiv.2304.07193) name an arXiv id."""
    prefix = "10.48550/arxiv."
    return normalise_arxiv(doi[len(prefix):]) if doi.startswith(prefix) else ""


def normalise_title(text: str) -> str:
    """A title to compare: LaTeX decoded, case and punctuation dropped."""
    return re.sub(r"[\W_]+", " ", plain_text(text or "")).strip().casefold()


def check_length(text: str, limit: int = MAX_BIBTEX_CHARS) -> None:
    if len(text) > limit:
        raise PaperError("bibtex", f"The BibTeX is {len(text):,} characters; at most {limit:,} are read.")


def parse_bibtex(text: str, *, limit: int = MAX_BIBTEX_CHARS) -> list[dict]:
    """The entries of a BibTeX text (bibtexparser's dicts: ID, ENTRYTYPE and lower-case field names)."""
    check_length(text, limit)
    parser = BibTexParser(common_strings=True, ignore_nonstandard_types=False)
    try:
        database = bibtexparser.loads(text, parser=parser)
    except RecursionError:
        raise PaperError("bibtex", "The BibTeX could not be read: its braces are nested too deeply.") from None
    except Exception as error:   # bibtexparser raises pyparsing's and its own errors on broken input
        raise PaperError("bibtex", f"The BibTeX could not be read: {error}") from None
    entries = database.entries
    for entry in entries:
        key = entry.get("ID", "")
        if not BIBTEX_KEY.fullmatch(key):
            raise PaperError("bibtex", f"The BibTeX key {key[:100]!r} is not a citation key "
                                       "(letters, digits and _ : . + / - only, at most 100).")
    return entries


@dataclass
class Paper:
    """A paper as named by a contributor, normalised. `entry` is the parsed BibTeX entry, when one was given."""

    doi: str = ""
    arxiv_id: str = ""
    key: str = ""               # a BibTeX key: of the entry given, or of a reference the contributor named
    title: str = ""
    year: str = ""
    entry: dict | None = None

    @property
    def bibtex(self) -> str:
        return entry_bibtex(self.entry) if self.entry else ""

    @property
    def authors(self) -> str:
        return display_authors(self.entry.get("author", "")) if self.entry else ""


def entry_identifiers(fields: dict) -> tuple[str, str]:
    """The DOI and arXiv id a BibTeX entry (or a Reference's fields) records, normalised."""
    fields = {name.lower(): value for name, value in fields.items()}
    doi = normalise_doi(fields.get("doi", ""))
    arxiv = ""
    if fields.get("archiveprefix", "").lower() == "arxiv" or fields.get("eprinttype", "").lower() == "arxiv":
        arxiv = normalise_arxiv(fields.get("eprint", ""))
    arxiv = arxiv or normalise_arxiv(fields.get("arxiv", "")) or normalise_arxiv(fields.get("url", ""))
    if not arxiv and "arxiv" in fields.get("journal", "").lower():   # journal = {arXiv preprint arXiv:1403.6382}
        arxiv = normalise_arxiv(fields["journal"].split()[-1])
    return doi, arxiv or arxiv_from_doi(doi)


def read_paper(paper: str, bibtex: str, title: str = "", *, parse=None) -> Paper:
    """The paper a contributor named: a DOI, an arXiv id or a BibTeX key in `paper`, and/or one BibTeX entry.

    When both are given they must agree (the DOI or arXiv id in the entry is the one named). A key that is
    neither a DOI nor an arXiv id is kept as `key`: it names a reference the registry already has (checked
    by the caller). Raises `PaperError` naming the field at fault. `parse` stands in for `parse_bibtex` (a CSV
    batch's parses, each distinct text read once: batch.BibtexParses)."""
    paper, bibtex, title = (paper or "").strip(), (bibtex or "").strip(), (title or "").strip()
    if not paper and not bibtex:
        raise PaperError("paper", "Name the paper: a DOI, an arXiv id, or its BibTeX.")
    if len(title) > MAX_TITLE_CHARS:
        raise PaperError("paper_title", f"A title has at most {MAX_TITLE_CHARS} characters.")
    named = Paper(title=title)
    if paper:
        named.doi = normalise_doi(paper)
        named.arxiv_id = normalise_arxiv(paper) or arxiv_from_doi(named.doi)
        if not (named.doi or named.arxiv_id):
            if not BIBTEX_KEY.fullmatch(paper):
                raise PaperError("paper", "Not a DOI (10.xxxx/…), an arXiv id (2304.07193, hep-th/9901001) "
                                          "or a BibTeX key.")
            named.key = paper
    if not bibtex:
        return named

    entries = (parse or parse_bibtex)(bibtex)
    if not entries:
        raise PaperError("bibtex", "No BibTeX entry found: an entry reads @article{key, title = {…}, …}.")
    if len(entries) > 1:
        raise PaperError("bibtex", f"The BibTeX holds {len(entries)} entries; give the one paper.")
    entry = entries[0]
    if not ENTRY_TYPE.fullmatch(entry.get("ENTRYTYPE", "")):
        raise PaperError("bibtex", f"The entry type @{entry.get('ENTRYTYPE', '')[:40]} is not a BibTeX type "
                                   f"(letters only, at most {MAX_ENTRY_TYPE_CHARS}: @article, @inproceedings, "
                                   "@misc, …).")
    if not plain_text(entry.get("title", "")):
        raise PaperError("bibtex", "The BibTeX entry has no title.")
    doi, arxiv = entry_identifiers(entry)
    if named.doi and doi and doi != named.doi:
        raise PaperError("paper", f"The BibTeX gives the DOI {doi}, not {named.doi}.")
    if named.arxiv_id and arxiv and arxiv != named.arxiv_id:
        raise PaperError("paper", f"The BibTeX gives the arXiv id {arxiv}, not {named.arxiv_id}.")
    if named.key and named.key != entry["ID"]:
        raise PaperError("paper", f"The BibTeX entry's key is {entry['ID']}, not {named.key}.")
    return Paper(doi=named.doi or doi, arxiv_id=named.arxiv_id or arxiv, key=entry["ID"],
                 title=plain_text(entry.get("title", ""))[:MAX_TITLE_CHARS], year=entry.get("year", "")[:16],
                 entry=entry)
