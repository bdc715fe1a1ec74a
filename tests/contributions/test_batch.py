"""A CSV batch: every row checked and shown before anything is stored, each bad row named with its row
number and error; then "Store N proposals" stores the good rows, and only them."""
import pytest
from contribution_helpers import DINO_BIB
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from pytest_django.asserts import assertContains

from leaderboard.contributions import batch as batch_module
from leaderboard.contributions.models import Proposal, Revision

pytestmark = pytest.mark.django_db

HEADER = "benchmark,method,score,kind,protocol,paper,location,note\n"
GOOD_AND_BAD = HEADER + (
    "mit67,CNNaug-SVM (OverFeat),69.0,off_the_shelf,svm,arXiv:1403.6382v2,Table 2,\n"          # row 2: good
    "MIT Indoor 67,DINOv2 ViT-g/14,88.1,off-the-shelf CNN,linear probe,Oquab2023,Table 10,\n"  # row 3: good (.bib key)
    "mit67,Broken score,eighty,off_the_shelf,svm,arXiv:1403.6382,Table 2,\n"                   # row 4: score
    "imagenet_21k,Somewhere else,50,off_the_shelf,svm,arXiv:1403.6382,Table 2,\n"              # row 5: benchmark
    "mit67,No paper,50,off_the_shelf,svm,,Table 2,\n"                                          # row 6: paper
    "mit67,Odd kind,50,quantum,svm,arXiv:1403.6382,Table 2,\n"                                 # row 7: kind
    "\n"                                                                                       # row 8: blank, skipped
    "mit67,CNNaug-SVM (OverFeat),69.0,off_the_shelf,svm,arXiv:1403.6382,Table 2,again\n"       # row 9: same as row 2
    "mit67,Too short\n"                                                                        # row 10: cells
)


def upload(client, text: str, bib: str = "", name="results.csv"):
    files = {"csv_file": SimpleUploadedFile(name, text.encode("utf-8"), content_type="text/csv")}
    if bib:
        files["bib_file"] = SimpleUploadedFile("papers.bib", bib.encode("utf-8"))
    return client.post(reverse("proposal-batch"), files)


def store(client, response):
    return client.post(reverse("proposal-batch"), {"step": "store", "token": response.context["token"],
                                                   "count": len(response.context["batch"].good)}, follow=True)


def test_a_batch_with_good_and_bad_rows_is_previewed_then_stored(client, board, contributor):
    client.force_login(contributor)
    assertContains(client.get(reverse("proposal-batch")), "The columns")

    preview = upload(client, GOOD_AND_BAD, bib=DINO_BIB)

    assert preview.status_code == 200 and not Proposal.objects.exists()      # nothing stored by the preview
    batch = preview.context["batch"]
    assert [row.number for row in batch.good] == [2, 3]
    errors = {row.number: " ".join(row.errors) for row in batch.bad}
    assert set(errors) == {4, 5, 6, 7, 9, 10}
    assert "score: Enter a number" in errors[4]
    assert "benchmark: Select a valid choice" in errors[5]
    assert "paper: Name the paper" in errors[6]
    assert "kind: Select a valid choice" in errors[7]
    assert "The same number as row 2" in errors[9]
    assert "2 cells where the header has 8" in errors[10]
    assertContains(preview, "<strong>2</strong> rows can be stored")
    assertContains(preview, 'id="row-4"')
    assertContains(preview, "Store 2 proposals")
    assert batch.good[0].data.reference == board.razavian      # known by its arXiv id
    assert batch.good[1].data.paper.key == "Oquab2023" and batch.good[1].data.reference is None

    stored = store(client, preview)

    assertContains(stored, "Stored 2 proposals from results.csv")
    proposals = Proposal.objects.order_by("batch_row")
    assert [(p.batch_row, p.method_name, p.kind, p.paper_protocol) for p in proposals] == [
        (2, "CNNaug-SVM (OverFeat)", "off_the_shelf", "svm"), (3, "DINOv2 ViT-g/14", "off_the_shelf", "linear_probe")]
    assert proposals[1].bibtex.startswith("@article{Oquab2023") and proposals[1].arxiv_id == "2304.07193"
    assert len({p.batch for p in proposals}) == 1 and Revision.objects.filter(action="proposed").count() == 2
    # The preview is gone from the session: sending "store" again stores nothing more.
    again = client.post(reverse("proposal-batch"), {"step": "store", "token": preview.context["token"], "count": 2},
                        follow=True)
    assertContains(again, "no longer at hand")
    assert Proposal.objects.count() == 2


def test_bibtex_in_one_row_serves_the_rows_that_name_its_key(client, board, contributor):
    client.force_login(contributor)
    quoted = DINO_BIB.replace('"', '""')
    text = ("benchmark,method,score,kind,protocol,paper,location,bibtex\n"
            f'mit67,DINOv2 ViT-S/14,80.0,off_the_shelf,knn,,Table 10,"{quoted}"\n'
            "mit67,DINOv2 ViT-B/14,84.0,off_the_shelf,knn,Oquab2023,Table 10,\n"
            "mit67,DINOv2 ViT-L/14,86.0,off_the_shelf,knn,arXiv:2304.07193,Table 10,\n")
    preview = upload(client, text)
    assert [row.number for row in preview.context["batch"].good] == [2, 3, 4], preview.context["batch"].bad
    store(client, preview)
    assert set(Proposal.objects.values_list("bibtex_key", flat=True)) == {"Oquab2023"}


def test_semicolons_and_a_spreadsheets_bom_are_read(client, board, contributor):
    client.force_login(contributor)
    text = "\ufeffBenchmark;Method;Score;Kind;Protocol;Paper;Location\nmit67;X;50,5;non_cnn;svm;1403.6382;Table 1\n"
    row = upload(client, text).context["batch"].rows[0]
    assert "score: Enter a number" in " ".join(row.errors)     # a decimal comma is named, not guessed
    text = text.replace("50,5", "50.5")
    assert [row.data.score for row in upload(client, text).context["batch"].good] == [50.5]


@pytest.mark.parametrize("text, message", [
    ("\n\n", "The CSV file is empty"),
    ("method,score\nX,1\n", "lacks the column(s) benchmark, kind, protocol, location"),
    (HEADER.strip() + ",colour\n", "Unknown column(s) colour"),
    ("benchmark,method,score,kind,protocol,location\n", "needs a paper column or a bibtex column"),
    (HEADER + 'mit67,"unclosed,1,non_cnn,svm,1403.6382,T1,\n' + "x" * 200_000, "could not be read"),
])
def test_a_file_that_cannot_be_read_is_named_and_nothing_is_stored(client, board, contributor, text, message):
    client.force_login(contributor)
    response = upload(client, text)
    assert response.status_code == 400
    assert any(message in error for error in response.context["batch"].errors)
    assertContains(response, "The file cannot be stored", status_code=400)
    assert not Proposal.objects.exists()


def test_limits_on_size_rows_and_encoding(client, board, contributor, monkeypatch):
    client.force_login(contributor)
    empty = upload(client, "")
    assert empty.status_code == 400 and "empty" in " ".join(empty.context["form"].errors["csv_file"])
    big = upload(client, HEADER + "x" * batch_module.MAX_CSV_BYTES)
    assert big.status_code == 400 and "at most 262,144 are read" in " ".join(big.context["form"].errors["csv_file"])
    latin = client.post(reverse("proposal-batch"), {"csv_file": SimpleUploadedFile("r.csv", "é,ü".encode("latin-1"))})
    assert latin.status_code == 400 and "not UTF-8" in " ".join(latin.context["form"].errors["csv_file"])
    monkeypatch.setattr(batch_module, "MAX_ROWS", 3)
    rows = "".join(f"mit67,Method {n},{n},non_cnn,svm,1403.6382,Table 1,\n" for n in range(5))
    many = upload(client, HEADER + rows)
    assert any("More than 3 rows" in error for error in many.context["batch"].errors)
    assert not many.context["batch"].good and "Store" not in many.content.decode().split("Upload another")[0]
    bib = upload(client, HEADER, bib="@misc{x, title={" + "t" * batch_module.MAX_BIB_BYTES + "}}")
    assert bib.status_code == 400 and "at most 65,536" in " ".join(bib.context["form"].errors["bib_file"])
    assert not Proposal.objects.exists()


def test_a_batch_that_changed_since_its_preview_is_shown_again(client, board, contributor, moderator):
    client.force_login(contributor)
    preview = upload(client, HEADER + "mit67,CNNaug-SVM (OverFeat),69.0,off_the_shelf,svm,1403.6382,Table 2,\n")
    # Meanwhile the same number reaches the board by another way.
    from leaderboard.registry.models import Method, Result
    Result.objects.create(dataset=board.dataset, method=Method.objects.create(name="CNNaug-SVM (OverFeat)"),
                          score=69.0, metric=board.metric, kind="off_the_shelf", origin="reported")
    response = client.post(reverse("proposal-batch"), {"step": "store", "token": preview.context["token"],
                                                       "count": 1})
    assert response.status_code == 409 and not Proposal.objects.exists()
    assertContains(response, "changed since its preview", status_code=409)
    assertContains(response, "already on the MIT Indoor 67 board", status_code=409)


def test_a_wrong_token_stores_nothing(client, board, contributor):
    client.force_login(contributor)
    upload(client, HEADER + "mit67,X,50,non_cnn,svm,1403.6382,Table 1,\n")
    response = client.post(reverse("proposal-batch"), {"step": "store", "token": "forged", "count": 1}, follow=True)
    assertContains(response, "no longer at hand")
    assert not Proposal.objects.exists()


def _count_parses(monkeypatch) -> list[str]:
    """Every BibTeX text bibtexparser is asked to read, from here on."""
    from leaderboard.contributions import papers

    texts, loads = [], papers.bibtexparser.loads
    monkeypatch.setattr(papers.bibtexparser, "loads", lambda text, **kw: texts.append(text) or loads(text, **kw))
    return texts


def test_an_entry_named_by_many_rows_is_parsed_once(board, monkeypatch):
    parses = _count_parses(monkeypatch)
    rows = "".join(f"mit67,DINOv2 variant {n},{50 + n / 10:.1f},off_the_shelf,knn,Oquab2023,Table 10,\n"
                   for n in range(batch_module.MAX_ROWS))
    batch = batch_module.read_batch(HEADER + rows, DINO_BIB)
    assert len(batch.good) == batch_module.MAX_ROWS and not batch.errors
    assert len(parses) == 1       # the .bib, once: its entry is handed to the 200 rows, not read again by each
    assert {row.data.paper.key for row in batch.good} == {"Oquab2023"}

    # An entry in one row's bibtex cell, repeated or named by key in the other rows: parsed once as well.
    parses.clear()
    quoted = DINO_BIB.replace('"', '""')
    text = "benchmark,method,score,kind,protocol,paper,location,bibtex\n" + "".join(
        f'mit67,DINOv2 cell {n},{60 + n},off_the_shelf,knn,{"Oquab2023" if n % 2 else ""},Table 10,'
        f'{"" if n % 2 else chr(34) + quoted + chr(34)}\n' for n in range(20))
    batch = batch_module.read_batch(text)
    assert len(batch.good) == 20 and len(parses) == 1


def test_the_bibtex_parsed_per_upload_is_capped(board, monkeypatch):
    monkeypatch.setattr(batch_module, "MAX_BATCH_BIBTEX_CHARS", 2_000)
    entries = [f"@article{{Paper{n}, title = {{Paper number {n} {'x' * 500}}}, year = {{2020}}}}" for n in range(5)]
    text = "benchmark,method,score,kind,protocol,location,bibtex\n" + "".join(
        f'mit67,Method {n},{50 + n},off_the_shelf,knn,Table 1,"{entry}"\n' for n, entry in enumerate(entries))
    batch = batch_module.read_batch(text)
    assert any("passes 2,000 characters; at most 2,000 are read per upload" in error for error in batch.errors)
    assert not batch.good
    # Under the cap the same rows read.
    monkeypatch.setattr(batch_module, "MAX_BATCH_BIBTEX_CHARS", 100_000)
    assert len(batch_module.read_batch(text).good) == 5


def test_an_upload_past_both_files_limits_is_refused_while_it_is_read(client, board, contributor):
    from django.test import Client

    from leaderboard.contributions.views import BATCH_SESSION_KEY

    client.force_login(contributor)
    both = batch_module.MAX_CSV_BYTES + batch_module.MAX_BIB_BYTES
    csv_part = HEADER + "x" * (batch_module.MAX_CSV_BYTES - len(HEADER) - 10)
    bib_part = "%" * (both - len(csv_part) + 1)      # one byte past the two limits together
    response = upload(client, csv_part, bib=bib_part)
    assert response.status_code == 400 and response.context["batch"] is None
    errors = " ".join(response.context["form"].errors["csv_file"])
    assert "larger than 320.0\xa0KB together" in errors and "not read further" in errors
    assertContains(response, "the upload was not read further", status_code=400)
    assert BATCH_SESSION_KEY not in client.session
    # The CSRF check still holds (the view sets its upload handler first, then checks it).
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(contributor)
    assert upload(strict, HEADER).status_code == 403
