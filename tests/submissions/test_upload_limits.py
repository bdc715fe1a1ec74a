"""The upload itself: one size limit per request enforced while it streams, nothing read before login,
and the submitter's file name never used on disk or shown unescaped."""
import secrets

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from submission_helpers import digits_features, features_post, post_submission

from leaderboard.submissions.models import Submission
from leaderboard.submissions.uploads import SizeLimitedUploadHandler


def test_an_oversized_upload_is_stopped_with_the_limit_in_the_message(client_as_owner, digits, settings,
                                                                      assert_nothing_stored):
    settings.SHELFMARK_MAX_UPLOAD_BYTES = 50_000
    response = post_submission(client_as_owner, "big.safetensors", b"\0" * 200_000)

    assert response.status_code == 400
    assert "larger than the upload limit of 48.8" in response.content.decode()
    assert_nothing_stored()


def test_the_upload_limit_counts_every_file_of_the_request(client, owner, digits, settings, assert_nothing_stored):
    # was: the count restarted for each file, so 100 files just under the limit each were written to disk
    settings.SHELFMARK_MAX_UPLOAD_BYTES = 50_000
    client.force_login(owner)
    response = client.post(reverse("submission-new"), {
        "model_name": "x", "source": "features", "benchmarks": ["digits"], "kind": "off_the_shelf",
        "extra": SimpleUploadedFile("a.bin", b"\1" * 30_000),
        "upload": SimpleUploadedFile("b.npz", b"\1" * 30_000),
    })
    assert response.status_code == 400
    assert "larger than the upload limit of 48.8" in response.content.decode()
    assert_nothing_stored()


def test_an_anonymous_upload_is_redirected_before_its_body_is_read(digits, monkeypatch):
    # was: the CSRF check read request.POST first, so anonymous uploads were streamed to disk
    chunks = []
    original = SizeLimitedUploadHandler.receive_data_chunk
    monkeypatch.setattr(SizeLimitedUploadHandler, "receive_data_chunk",
                        lambda self, data, start: chunks.append(len(data)) or original(self, data, start))
    client = Client(enforce_csrf_checks=True)
    token = secrets.token_hex(16)
    client.cookies["csrftoken"] = token
    response = features_post(client, b"\0" * 100_000, csrfmiddlewaretoken=token)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert chunks == []


def test_the_uploaded_file_name_never_reaches_the_disk_or_the_page(client, owner, digits, tmp_path, session_media):
    client.force_login(owner)
    content = digits_features(tmp_path / "f.npz").read_bytes()
    response = features_post(client, content, name="../../<img src=x onerror=alert(1)>.npz",
                             model_name="<script>alert(1)</script>")

    assert response.status_code == 302
    submission = Submission.objects.get()
    assert submission.upload == f"submissions/{submission.pk}/upload.npz"
    assert (session_media / submission.upload).read_bytes() == content
    for url in (submission.get_absolute_url(), reverse("submission-list")):
        page = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "onerror" not in page
