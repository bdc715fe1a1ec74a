"""The submission-flow pages as a user sees them: the form shows only the chosen source's fields (and all
of them without JavaScript), says the upload limit, refuses an over-limit file before uploading it, the
status page names the split being extracted, and every page fits a phone and a desktop."""
import pytest
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from leaderboard.submissions.models import EvaluationJob, Submission

PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 900}
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture
def running_job(digits, make_user):
    owner = make_user("ada")
    submission = Submission.objects.create(owner=owner, model_name="ResNet-18 (weights)", source="weights",
                                           architecture="resnet18")
    job = EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=digits, status="running",
                                       sent_at=timezone.now(), stage="extracting", done=544, total=898,
                                       images_per_second=43.2, message="train", log="loading model\nextracting")
    return job


@pytest.mark.django_db
def test_form_without_javascript_shows_every_source_field_and_the_upload_limit(client, digits, make_user, settings):
    settings.SHELFMARK_MAX_UPLOAD_BYTES = 5 * 1024**2
    client.force_login(make_user("ada"))
    page = client.get("/submissions/new/").content.decode()
    for name in ("builtin_model", "random_init", "architecture", "upload", "kind", "benchmarks"):
        assert f'name="{name}"' in page, name
    assert 'data-sources="weights model_folder features onnx"' in page
    assert f"max. {filesizeformat(5 * 1024**2)}" in page and 'data-max-bytes="5242880"' in page
    assert "What happens next" in page


@pytest.mark.django_db
def test_errors_sit_next_to_their_fields(client, digits, make_user):
    client.force_login(make_user("ada"))
    response = client.post("/submissions/new/", {"model_name": "x", "source": "weights", "kind": "off_the_shelf",
                                                 "benchmarks": ["digits"]})
    assert response.status_code == 400
    page = response.content.decode()
    architecture = page[page.index('id="field-architecture"'):page.index('id="field-upload"')]
    assert "Choose the architecture these weights are for." in architecture
    upload = page[page.index('id="field-upload"'):page.index('id="field-kind"')]
    assert "This kind of submission needs a file." in upload
    assert "Please correct the fields marked below." in page


@pytest.mark.django_db
def test_status_page_names_the_split_being_extracted(client, running_job):
    client.force_login(running_job.submission.owner)
    page = client.get(running_job.submission.get_absolute_url()).content.decode()
    assert '<span class="job-stage">extracting features</span>' in page
    assert '<span class="job-split">(train)</span>' in page and "544/898" in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_form_script_and_pages_fit(live_server, browser, running_job, tmp_path):
    page = browser.new_page(viewport=PHONE)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "a-long-test-password")
    page.click("form.form button[type=submit]")
    page.wait_for_load_state()

    page.goto(f"{live_server.url}/submissions/new/")
    assert page.is_visible("input[name=builtin_model]") and not page.is_visible("input[name=architecture]")
    assert not page.is_visible("input[name=upload]")
    page.check("input[name=source][value=onnx]")
    assert page.is_visible("input[name=upload]") and page.is_visible("select[name=kind]")
    assert not page.is_visible("input[name=builtin_model]")

    # An over-limit file is refused in the page, before any upload (limit lowered in the page for the test).
    page.evaluate("document.querySelector('input[name=upload]').dataset.maxBytes = '100'")
    big = tmp_path / "model.onnx"
    big.write_bytes(b"\0" * 1000)
    page.set_input_files("input[name=upload]", str(big))
    page.fill("input[name=model_name]", "Too big")
    page.check("input[name=benchmarks][value=digits]")
    page.click("#submission-form button[type=submit]")
    assert "larger than the upload limit of 100 bytes" in page.inner_text("#field-upload .client-error")
    assert page.url.endswith("/submissions/new/") and not Submission.objects.filter(model_name="Too big").exists()

    # The status page's script fills the split in from the JSON too.
    page.goto(f"{live_server.url}{running_job.submission.get_absolute_url()}")
    for _ in range(100):  # the CSP refuses wait_for_function's eval: poll with evaluate (CDP, not the page)
        if "images/s" in page.inner_text(".job-speed"):
            break
        page.wait_for_timeout(100)
    assert page.inner_text(".job-split") == "(train)"

    urls = ["/submissions/new/", "/submissions/", running_job.submission.get_absolute_url(), "/downloads/",
            "/leaderboards/digits/", "/leaderboards/digits/v0/", "/leaderboards/digits/diff/?a=0&b=0",
            "/accounts/signup/"]
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        for url in urls:
            page.goto(f"{live_server.url}{url}")
            assert page.evaluate(OVERFLOW) == 0, (url, viewport)
    assert errors == []
    page.close()


def test_downloads_lists_the_historical_items(client, digits):
    from leaderboard.registry.models import HistoricalDownload

    HistoricalDownload.objects.create(what="MIT67 features", size="1.2 GB", dataset=digits)
    page = client.get("/downloads/").content.decode()
    assert "MIT67 features" in page and "1.2 GB" in page
