"""Today's models on the site: a Hub id or a model folder through the form, resolved before anything is
queued (without torch in the web process), run by a worker from the shared Hub cache, and shown on
the board with the commit, the preprocessing and the weights' hash."""
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from submission_helpers import CreatesAFile, media_files, wait_for

from leaderboard.engine import job_spec
from leaderboard.submissions.models import EvaluationJob, Submission
from leaderboard.submissions.services import SubmissionRequest, submission_create
from leaderboard.submissions.validation import SubmissionRefused

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def hub(settings, hub_cache):
    settings.SHELFMARK_HF_CACHE = hub_cache[0]
    return hub_cache


def snapshot_of(hub_cache) -> Path:
    cache, hub_id, commit = hub_cache
    return cache / f"models--{hub_id.removeprefix('hf-hub:').replace('/', '--')}" / "snapshots" / commit


def test_the_web_resolves_a_hub_id_and_a_library_name_without_importing_torch(hub_cache):
    cache, hub_id, commit = hub_cache
    code = ("import json, sys, django\ndjango.setup()\nimport leaderboard.urls\n"
            "from leaderboard.submissions import selectors, services\n"
            f"about, error = selectors.model_preview({hub_id!r})\n"
            "timm_about, _ = selectors.model_preview('timm:vit_small_patch14_dinov2')\n"
            "print(json.dumps([about, timm_about, 'torch' in sys.modules]))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "leaderboard.settings", "SHELFMARK_HF_CACHE": str(cache),
           "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    about, timm_about, torch_imported = json.loads(run.stdout.strip().splitlines()[-1])
    assert not torch_imported
    assert (about["family"], about["commit"], about["default_readout"]) == ("transformers", commit, "cls")
    assert about["preprocessing"]["resize_mode"] == "squash" and about["preprocessing"]["input_size"] == 32
    assert timm_about["preprocessing"]["input_size"] == 518   # DINOv2's ViT-S/14 pretrained_cfg


def test_the_form_previews_what_a_name_resolves_to(client, make_user, hub):
    cache, hub_id, commit = hub
    assert client.get("/submissions/model-preview.json", {"name": hub_id}).status_code == 302   # to the login
    client.force_login(make_user("ada"))
    about = client.get("/submissions/model-preview.json", {"name": hub_id}).json()
    assert about["commit"] == commit and about["readouts"] == ["cls", "mean", "cls+mean", "last4_cls", "pooler"]
    missing = client.get("/submissions/model-preview.json", {"name": "hf-hub:nobody/absent"})
    assert missing.status_code == 400 and "not in the local Hub cache" in missing.json()["error"]
    names = client.get("/submissions/models.json").json()
    assert "efficientnet_lite0" in names["builtin"] and "timm:test_vit" in names["libraries"]


def test_a_hub_id_submission_records_what_it_resolved_to_and_runs_from_the_shared_cache(client, make_user, hub,
                                                                                         skimage_holidays):
    cache, hub_id, commit = hub
    client.force_login(make_user("ada"))
    response = client.post("/submissions/new/", {
        "model_name": "Tiny ViT (Hub)", "source": "builtin", "builtin_model": hub_id, "readout": "cls+mean",
        "benchmarks": ["skimage_holidays"], "kind": "off_the_shelf"})
    assert response.status_code == 302, response.content.decode()[:2000]
    submission = Submission.objects.get()
    assert submission.model_info["commit"] == commit and submission.model_info["readout"] == "cls+mean"
    spec = job_spec(submission.jobs.get())
    # pinned to the commit it resolved to: a later push to the repository changes nothing measured
    assert (spec.model, spec.readout, spec.hub_cache) == (f"{hub_id}@{commit}", "cls+mean", cache)
    page = client.get(submission.get_absolute_url()).content.decode()
    assert f"at commit <code>{commit[:12]}</code>" in page and "squash" not in page   # said in words
    assert "resize to 32×32, centre crop 32, bilinear" in page


def test_a_readout_the_family_lacks_or_an_unknown_name_is_refused_before_anything_is_stored(
        make_user, hub, skimage_holidays, assert_nothing_stored):
    owner = make_user("ada")
    _, hub_id, _ = hub
    request = {"owner": owner, "model_name": "x", "source": Submission.Source.BUILTIN,
               "benchmarks": ["skimage_holidays"]}
    with pytest.raises(SubmissionRefused, match="offer the readouts cls, mean.*not 'projected'"):
        submission_create(SubmissionRequest(architecture=hub_id, readout="projected", **request))
    with pytest.raises(SubmissionRefused, match="timm 1.0.31 has no architecture 'not_a_net'"):
        submission_create(SubmissionRequest(architecture="timm:not_a_net", random_init=True, **request))
    with pytest.raises(SubmissionRefused, match="not a built-in model of the engine: give a Hub id"):
        submission_create(SubmissionRequest(architecture="timm:test_vit", **request))
    assert_nothing_stored()


def _zip(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_model_folder_upload_is_checked_extracted_and_run_from_its_folder(client, make_user, hub,
                                                                             skimage_holidays, session_media):
    snapshot = snapshot_of(hub)
    content = _zip({f"tiny-vit/{path.name}": path.read_bytes() for path in snapshot.iterdir()}
                   | {"tiny-vit/README.md": b"# a tiny ViT"})
    client.force_login(make_user("ada"))
    response = client.post("/submissions/new/", {
        "model_name": "Tiny ViT (folder)", "source": "model_folder", "benchmarks": ["skimage_holidays"],
        "kind": "off_the_shelf", "upload": SimpleUploadedFile("tiny-vit.zip", content)})
    assert response.status_code == 302, response.content.decode()[:2000]
    submission = Submission.objects.get()
    folder = session_media / "submissions" / str(submission.pk) / "model"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors",
                                                       "preprocessor_config.json"]
    assert submission.upload_format == "model_folder" and submission.model_info["family"] == "transformers"
    assert job_spec(submission.jobs.get()).model_dir == folder
    assert not any((session_media / "staging").iterdir())


@pytest.mark.parametrize("extra, message", [
    ({"modeling_evil.py": b"raise SystemExit"}, "which is not part of a model folder"),
    ({"pytorch_model.bin": pickle.dumps(CreatesAFile("/tmp/shelfmark-pwned"))}, "code and pickles never are"),
    ({"../escape.json": b"{}"}, "sit at its top level"),
])
def test_a_model_folder_with_code_pickles_or_escaping_paths_is_refused_and_nothing_kept(
        client, make_user, hub, skimage_holidays, session_media, assert_nothing_stored, extra, message):
    snapshot = snapshot_of(hub)
    content = _zip({path.name: path.read_bytes() for path in snapshot.iterdir()} | extra)
    client.force_login(make_user("ada"))
    before = media_files(session_media)
    response = client.post("/submissions/new/", {
        "model_name": "Evil folder", "source": "model_folder", "benchmarks": ["skimage_holidays"],
        "kind": "off_the_shelf", "upload": SimpleUploadedFile("evil.zip", content)})
    assert response.status_code == 400
    assert message in response.content.decode().replace("&#x27;", "'")
    assert media_files(session_media) == before and not Path("/tmp/shelfmark-pwned").exists()
    assert_nothing_stored()


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_hub_model_submitted_through_the_form_runs_and_lands_on_the_board(worker, client, make_user, hub,
                                                                           skimage_holidays):
    cache, hub_id, commit = hub
    owner = make_user("grace")
    client.force_login(owner)
    response = client.post("/submissions/new/", {
        "model_name": "Tiny ViT (Hub)", "source": "builtin", "builtin_model": hub_id,
        "benchmarks": ["skimage_holidays"], "kind": "off_the_shelf"})
    assert response.status_code == 302
    submission = Submission.objects.get(owner=owner)
    job = submission.jobs.get()
    wait_for(lambda: EvaluationJob.objects.get(pk=job.pk).is_finished, 180, what="the Hub model's job to finish")
    job.refresh_from_db()
    assert job.status == "done", job.error + job.error_details
    provenance = job.result.provenance
    weights = snapshot_of(hub) / "model.safetensors"
    import hashlib

    assert provenance["hub"] == f"{hub_id.removeprefix('hf-hub:')}@{commit}"
    assert provenance["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert provenance["family"] == "transformers" and provenance["readout"] == "cls"
    assert provenance["preprocessing"]["resize_mode"] == "squash"
    client.post(f"/submissions/{submission.pk}/make-public/")
    board = client.get(skimage_holidays.get_absolute_url()).content.decode()
    assert "Tiny ViT (Hub)" in board and f"@{commit[:12]}…" in board and "resize to 32×32, centre crop 32" in board
