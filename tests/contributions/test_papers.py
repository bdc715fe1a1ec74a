"""A paper however it is written is one reference: DOIs and arXiv ids normalised, BibTeX parsed by
bibtexparser, a known reference reused (by DOI, arXiv id, key and title), never entered twice."""
import re

import pytest
from contribution_helpers import DINO_BIB, RAZAVIAN_BIB
from django.urls import reverse

from leaderboard.contributions import services
from leaderboard.contributions.forms import ProposalForm
from leaderboard.contributions.models import Proposal
from leaderboard.contributions.papers import (
    Paper,
    PaperError,
    normalise_arxiv,
    normalise_doi,
    read_paper,
)
from leaderboard.contributions.selectors import known_reference
from leaderboard.registry.models import Reference


@pytest.mark.parametrize("text", ["10.1109/CVPRW.2014.131", "https://doi.org/10.1109/CVPRW.2014.131",
                                  "http://dx.doi.org/10.1109/cvprw.2014.131", "doi:10.1109/CVPRW.2014.131",
                                  "DOI: 10.1109/CVPRW.2014.131 ", "  10.1109/cvprw.2014.131"])
def test_dois_are_normalised(text):
    assert normalise_doi(text) == "10.1109/cvprw.2014.131"


@pytest.mark.parametrize("text", ["", "1403.6382", "10.1/x", "CVPRW.2014.131", "https://example.org/10.1109/x"])
def test_what_is_not_a_doi(text):
    assert normalise_doi(text) == ""


@pytest.mark.parametrize("text, expected", [
    ("arXiv:2304.07193v2", "2304.07193"), ("2304.07193", "2304.07193"), ("arxiv:2304.07193", "2304.07193"),
    ("https://arxiv.org/abs/2304.07193v1", "2304.07193"), ("https://arxiv.org/pdf/2304.07193v3.pdf", "2304.07193"),
    ("1403.6382", "1403.6382"), ("0706.0001v1", "0706.0001"),            # the four-digit numbers of 2007-2014
    ("hep-th/9901001", "hep-th/9901001"), ("hep-th/9901001v2", "hep-th/9901001"),
    ("math.GT/0309136", "math/0309136"), ("arXiv:cs.CV/0501001v1", "cs/0501001"),   # old style, subject class dropped
    ("https://arxiv.org/abs/math/0309136", "math/0309136"),
])
def test_arxiv_ids_are_normalised(text, expected):
    assert normalise_arxiv(text) == expected


@pytest.mark.parametrize("text", ["", "2304.071", "arXiv:23040.7193", "math/030913", "Razavian2014", "10.1109/x"])
def test_what_is_not_an_arxiv_id(text):
    assert normalise_arxiv(text) == ""


def test_bibtex_is_read_by_the_parser_with_its_identifiers():
    paper = read_paper("", RAZAVIAN_BIB)
    assert (paper.key, paper.doi, paper.arxiv_id, paper.year) == (
        "Razavian2014", "10.1109/cvprw.2014.131", "1403.6382", "2014")
    assert paper.title == "CNN Features off-the-shelf: an Astounding Baseline for Recognition"   # braces dropped
    assert paper.bibtex.startswith("@inproceedings{Razavian2014") and "Sullivan" in paper.authors
    arxiv_doi = read_paper("https://doi.org/10.48550/arXiv.2304.07193", "")
    assert arxiv_doi.arxiv_id == "2304.07193"     # arXiv's own DOIs name the arXiv id too


@pytest.mark.parametrize("paper, bibtex, field, message", [
    ("", "", "paper", "Name the paper"),
    ("not a doi!", "", "paper", "Not a DOI"),
    ("", "just some words", "bibtex", "No BibTeX entry"),
    ("", "@article{a, title={A}}\n@article{b, title={B}}", "bibtex", "2 entries"),
    ("", "@article{a, author={Nobody}}", "bibtex", "no title"),
    ("", "@article{has space, title={A}}", "bibtex", ""),
    ("10.1000/other", RAZAVIAN_BIB, "paper", "not 10.1000/other"),
    ("arXiv:2304.07193", RAZAVIAN_BIB, "paper", "not 2304.07193"),
    ("Other2014", RAZAVIAN_BIB, "paper", "key is Razavian2014"),
    ("", "@misc{x, title={" + "a" * 20_001 + "}}", "bibtex", "at most 20,000"),
    ("", "@misc{x, title={" + "{" * 5000 + "}}", "bibtex", "nested too deeply"),
])
def test_what_cannot_be_read_is_named(paper, bibtex, field, message):
    with pytest.raises(PaperError) as error:
        read_paper(paper, bibtex)
    assert error.value.field == field and message in str(error.value)


@pytest.mark.parametrize("paper", [
    Paper(doi="10.1109/cvprw.2014.131"), Paper(arxiv_id="1403.6382"), Paper(key="Razavian2014"),
    Paper(title="CNN features off-the-shelf: An astounding baseline for recognition!"),
    Paper(key="Razavian2014", title="CNN Features off-the-shelf: an Astounding Baseline for Recognition", year="2014"),
])
def test_a_known_paper_is_found_however_it_is_named(board, paper):
    assert known_reference(paper) == board.razavian


@pytest.mark.parametrize("paper", [
    Paper(doi="10.1109/cvpr.2014.81", title="CNN Features off-the-shelf: an Astounding Baseline for Recognition"),
    Paper(key="Razavian2014", title="Another paper with the same key"),
    Paper(title="CNN Features off-the-shelf: an Astounding Baseline for Recognition", year="2019"),
    Paper(arxiv_id="2304.07193"),
])
def test_a_different_paper_is_not_taken_for_a_known_one(board, paper):
    assert known_reference(paper) is None


def _accept(form_data, contributor, moderator):
    form = ProposalForm(form_data)
    assert form.is_valid(), form.errors
    return services.accept(services.propose(contributor, form.proposal_data()), moderator)


def test_a_known_reference_is_reused_whichever_way_the_paper_is_named(board, contributor, moderator, proposal_data):
    references = Reference.objects.count()
    for number, paper in enumerate(["https://doi.org/10.1109/CVPRW.2014.131", "arXiv:1403.6382v3", "Razavian2014"]):
        result = _accept(proposal_data(paper=paper, bibtex="", method_name=f"Variant {number}", kind="non_cnn"),
                         contributor, moderator)
        assert result.reference == board.razavian and result.method.reference == board.razavian
    result = _accept(proposal_data(bibtex=RAZAVIAN_BIB, method_name="From its BibTeX"), contributor, moderator)
    assert result.reference == board.razavian
    assert Reference.objects.count() == references


def test_a_new_paper_becomes_one_reference_from_its_bibtex(board, contributor, moderator, proposal_data):
    first = _accept(proposal_data(), contributor, moderator)
    reference = first.reference
    assert (reference.key, reference.entry_type, reference.year) == ("Oquab2023", "article", "2024")
    assert reference.title == "DINOv2: Learning Robust Visual Features without Supervision"
    assert reference.authors.startswith("Maxime Oquab, Timothée Darcet")
    assert reference.url == "https://arxiv.org/abs/2304.07193" and reference.bibtex.startswith("@article{Oquab2023")
    assert reference.order > board.razavian.order     # after the page's own references
    # The same paper again, by arXiv id only (with a version), by its arXiv DOI, by key: the same reference.
    for number, paper in enumerate(["arXiv:2304.07193v2", "10.48550/arXiv.2304.07193", "Oquab2023"]):
        again = _accept(proposal_data(paper=paper, bibtex="", method_name=f"DINOv2 variant {number}"),
                        contributor, moderator)
        assert again.reference == reference
    assert Reference.objects.filter(title__startswith="DINOv2").count() == 1


def test_a_paper_named_by_doi_alone_needs_its_title_and_gets_a_misc_entry(board, contributor, moderator,
                                                                          proposal_data):
    form = ProposalForm(proposal_data(paper="doi:10.1109/CVPR.2014.81", bibtex=""))
    assert not form.is_valid() and "give its title" in form.errors["paper_title"][0]
    result = _accept(proposal_data(paper="doi:10.1109/CVPR.2014.81", bibtex="", paper_title="Rich feature hierarchies"),
                     contributor, moderator)
    reference = result.reference
    assert reference.key == "doi:10.1109/cvpr.2014.81" and reference.entry_type == "misc"
    assert reference.fields["doi"] == "10.1109/cvpr.2014.81" and reference.url == "https://doi.org/10.1109/cvpr.2014.81"
    assert "@misc{doi:10.1109/cvpr.2014.81" in reference.bibtex and "Rich feature hierarchies" in reference.bibtex


def test_a_new_paper_whose_key_is_taken_gets_a_key_of_its_own(board, contributor, moderator, proposal_data):
    bibtex = "@article{Razavian2014,\n  title = {A different paper},\n  year = {2021}\n}\n"
    result = _accept(proposal_data(bibtex=bibtex), contributor, moderator)
    assert result.reference != board.razavian and result.reference.key == "Razavian2014-2"
    assert "@article{Razavian2014-2" in result.reference.bibtex


def test_an_unknown_key_alone_is_refused(board, proposal_data):
    form = ProposalForm(proposal_data(paper="Nobody2099", bibtex=""))
    assert not form.is_valid() and "no reference with the key Nobody2099" in form.errors["paper"][0]


@pytest.mark.parametrize("url, expected", [
    ("javascript:alert(1)", "https://arxiv.org/abs/2304.07193"),        # not a link: arXiv's page instead
    (" JavaScript:alert(document.cookie)", "https://arxiv.org/abs/2304.07193"),
    ("data:text/html,<script>alert(1)</script>", "https://arxiv.org/abs/2304.07193"),
    ("//evil.example/x", "https://arxiv.org/abs/2304.07193"),
    ("https://openreview.net/forum?id=a68SUt6zFt", "https://openreview.net/forum?id=a68SUt6zFt"),
])
def test_a_references_link_is_a_web_address_or_its_papers_page(client, board, contributor, moderator, proposal_data,
                                                               url, expected):
    bibtex = DINO_BIB.replace("  year = {2024},", f"  year = {{2024}},\n  url = {{{url}}},")
    assert url in bibtex
    reference = _accept(proposal_data(bibtex=bibtex), contributor, moderator).reference
    assert reference.url == expected
    page = client.get(reverse("reference-list")).content.decode()
    item = page[page.index('<li id="ref-Oquab2023">'):].split("</li>")[0].replace("&amp;", "&")
    assert f'<a href="{expected}" rel="noopener">' in item
    assert all(href.startswith(("https://", "/datasets/")) for href in re.findall(r'href="([^"]*)"', item)), item


def test_a_javascript_url_with_no_doi_or_arxiv_id_is_no_link(board, contributor, moderator, proposal_data):
    bibtex = "@misc{Nolink2020,\n  title = {A paper with no address},\n  url = {javascript:alert(1)}\n}\n"
    reference = _accept(proposal_data(bibtex=bibtex), contributor, moderator).reference
    assert reference.url == ""


def test_a_long_entry_type_is_refused_when_proposed(board, proposal_data):
    long_type = "@" + "onlinepublicationofsomekindorother" + DINO_BIB.removeprefix("@article")   # 34 letters
    form = ProposalForm(proposal_data(bibtex=long_type))
    assert not form.is_valid()
    assert "is not a BibTeX type (letters only, at most 32" in form.errors["bibtex"][0]
    assert ProposalForm(proposal_data(bibtex="@Online" + DINO_BIB.removeprefix("@article"))).is_valid()


def test_a_stored_proposal_with_a_long_entry_type_is_accepted_as_misc(board, contributor, moderator, proposal_data):
    form = ProposalForm(proposal_data())
    assert form.is_valid(), form.errors
    proposal = services.propose(contributor, form.proposal_data())
    Proposal.objects.filter(pk=proposal.pk).update(bibtex="@" + "x" * 40 + DINO_BIB.removeprefix("@article"))
    reference = services.accept(proposal, moderator).reference
    assert reference.entry_type == "misc" and reference.bibtex.startswith("@misc{Oquab2023")
