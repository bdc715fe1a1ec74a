"""The contribution forms: one proposal (also each row of a CSV batch), the batch upload, and the review."""
from __future__ import annotations

import math

from django import forms

from leaderboard.registry.models import Dataset, Result

from .models import Proposal
from .papers import MAX_BIBTEX_CHARS, MAX_TITLE_CHARS, Paper, PaperError, read_paper
from .selectors import known_reference
from .services import MAX_REASON_CHARS, ProposalData

MAX_SCORE = 1e6


class BenchmarkChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, dataset: Dataset) -> str:
        direction = "" if dataset.metric.higher_is_better else ", lower is better"
        return f"{dataset.name} ({dataset.metric.name}, {dataset.metric.unit}{direction})"


def benchmarks():
    return Dataset.objects.select_related("metric", "task_family").order_by("task_family__order", "order", "name")


class ProposalForm(forms.Form):
    dataset = BenchmarkChoiceField(queryset=benchmarks(), to_field_name="slug", label="Benchmark",
                                   empty_label="choose a benchmark")
    method_name = forms.CharField(label="Method", max_length=200,
                                  help_text="As the paper names it, e.g. “DINOv2 ViT-g/14 (frozen)”.")
    score = forms.FloatField(label="Score", widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
                             help_text="As the paper prints it, in the benchmark's unit (shown beside its name).")
    kind = forms.ChoiceField(choices=Result.Kind.choices, widget=forms.RadioSelect)
    paper_protocol = forms.ChoiceField(label="The paper's protocol", choices=Proposal.PaperProtocol.choices,
                                       widget=forms.RadioSelect)
    location = forms.CharField(label="Where in the paper", max_length=100,
                               widget=forms.TextInput(attrs={"placeholder": "Table 3"}),
                               help_text="The table or figure (and row) the number stands in.")
    paper = forms.CharField(label="Paper: DOI, arXiv id or BibTeX key", max_length=300, required=False,
                            widget=forms.TextInput(attrs={"placeholder": "10.1109/CVPRW.2014.131 or arXiv:1403.6382",
                                                          "spellcheck": "false", "autocomplete": "off"}),
                            help_text="A DOI or an arXiv id in any usual form (a URL, <code>doi:</code>, "
                                      "<code>arXiv:…v2</code>), or the key of a reference Shelfmark already has.")
    bibtex = forms.CharField(label="BibTeX", max_length=MAX_BIBTEX_CHARS, required=False,
                             widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
                             help_text="The paper's BibTeX entry (needed for a paper Shelfmark does not know, "
                                       "unless you give its title below).")
    paper_title = forms.CharField(label="Paper title", max_length=MAX_TITLE_CHARS, required=False,
                                  help_text="Only for a new paper named by DOI or arXiv id without BibTeX.")
    note = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Anything a reader needs: the backbone, the input size, a non-standard metric.")

    def __init__(self, *args, parse_bibtex=None, **kwargs):
        """`parse_bibtex`: what reads the BibTeX (papers.parse_bibtex unless given: a CSV batch hands its
        rows one batch.BibtexParses, so an entry named by many rows is read once)."""
        super().__init__(*args, **kwargs)
        self.parse_bibtex = parse_bibtex

    def clean_score(self):
        score = self.cleaned_data["score"]
        if not math.isfinite(score) or abs(score) > MAX_SCORE:
            raise forms.ValidationError("Enter the score as a finite number.")
        return score

    def clean(self):
        cleaned = super().clean()
        dataset, score = cleaned.get("dataset"), cleaned.get("score")
        if dataset and score is not None and dataset.metric.unit == "%" and not 0 <= score <= 100:
            self.add_error("score", f"{dataset.name} is scored in % (0 to 100); {score:g} is not a percentage.")
        try:
            paper = read_paper(cleaned.get("paper", ""), cleaned.get("bibtex", ""), cleaned.get("paper_title", ""),
                               parse=self.parse_bibtex)
        except PaperError as error:
            self.add_error(error.field, str(error))
            return cleaned
        reference = known_reference(paper)
        if reference is None and paper.key and not paper.entry:
            self.add_error("paper", f"Shelfmark has no reference with the key {paper.key}: give the paper's DOI, "
                                    "arXiv id or BibTeX.")
        elif reference is None and not paper.entry and not paper.title:
            self.add_error("paper_title", "Shelfmark does not know this paper yet: give its title, or its BibTeX.")
        cleaned["paper_read"], cleaned["reference"] = paper, reference
        return cleaned

    def proposal_data(self, batch_row: int | None = None) -> ProposalData:
        data = self.cleaned_data
        paper: Paper = data["paper_read"]
        reference = data["reference"]
        if reference is not None:   # shown as the registry names it
            paper.key = paper.key or reference.key
            paper.title = paper.title or reference.title
            paper.year = paper.year or reference.year
        return ProposalData(dataset=data["dataset"], method_name=data["method_name"].strip(), score=data["score"],
                            kind=data["kind"], paper_protocol=data["paper_protocol"],
                            location=data["location"].strip(), note=data["note"].strip(), paper=paper,
                            reference=reference, batch_row=batch_row)

    @classmethod
    def initial_for(cls, proposal: Proposal) -> dict:
        """The form as the proposal stands, for its contributor's edit."""
        return {"dataset": proposal.dataset.slug, "method_name": proposal.method_name, "score": proposal.score,
                "kind": proposal.kind, "paper_protocol": proposal.paper_protocol, "location": proposal.location,
                "note": proposal.note, "bibtex": proposal.bibtex,
                "paper_title": "" if proposal.bibtex else proposal.paper_title,
                "paper": proposal.doi or (f"arXiv:{proposal.arxiv_id}" if proposal.arxiv_id else proposal.bibtex_key)}


class EditForm(ProposalForm):
    comment = forms.CharField(label="What you changed", max_length=MAX_REASON_CHARS, required=False,
                              widget=forms.Textarea(attrs={"rows": 2}),
                              help_text="For the moderator: what you changed, in answer to their request.")


class BatchForm(forms.Form):
    csv_file = forms.FileField(label="CSV file", help_text="One proposal per row; the columns are listed below.")
    bib_file = forms.FileField(label="BibTeX file", required=False,
                               help_text="Optional: the papers' entries, named by key in the CSV's paper column.")


class ReviewForm(forms.Form):
    DECISIONS = [("accept", "Accept: it joins the live board"), ("changes", "Ask for changes"),
                 ("reject", "Reject")]
    decision = forms.ChoiceField(choices=DECISIONS, widget=forms.RadioSelect)
    reason = forms.CharField(max_length=MAX_REASON_CHARS, required=False, widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="The contributor reads it. Needed to reject or to ask for changes.")
    # The proposal as the page showed it (Proposal.version): a review of a proposal edited since is refused.
    version = forms.CharField(max_length=100, required=False, widget=forms.HiddenInput)

    @classmethod
    def for_proposal(cls, proposal: Proposal) -> ReviewForm:
        return cls(initial={"version": proposal.version})

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("version"):
            self.add_error(None, "This review form does not say which version of the proposal you read: "
                                 "open the proposal again.")
        if cleaned.get("decision") in ("changes", "reject") and not cleaned.get("reason", "").strip():
            self.add_error("reason", "Say why: the contributor reads it.")
        return cleaned
