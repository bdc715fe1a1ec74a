"""Small helpers shared by the submission tests: waiting, files on disk, hostile payloads, form posts."""
import time
from pathlib import Path

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def log_in(page, live_server, username, password="a-long-test-password"):
    """Log in through the site's form in a Playwright page (the password make_user gives)."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form.form button[type=submit]")
    page.wait_for_load_state()


def media_files(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]


class CreatesAFile:
    """Unpickling this would create `path`: what a malicious "weights" file does."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def post_submission(client, upload_name, content, **fields):
    """POST the submission form with a weights upload for resnet18 on digits (fields override)."""
    data = {"model_name": "My net", "source": "weights", "architecture": "resnet18", "benchmarks": ["digits"],
            "kind": "off_the_shelf", **fields}
    data["upload"] = SimpleUploadedFile(upload_name, content)
    return client.post(reverse("submission-new"), data)


def features_post(client, content: bytes, name="features.npz", **extra):
    """POST the submission form with a precomputed-features upload for digits."""
    data = {"model_name": "My features", "source": "features", "benchmarks": ["digits"], "kind": "off_the_shelf",
            "upload": SimpleUploadedFile(name, content), **extra}
    return client.post(reverse("submission-new"), data)


def digits_features(path, *, dim=8, drop=0, nan=False):
    """A features .npz for digits, one vector per image id: `drop` ids left out, one NaN if `nan`."""
    from workers.benchmarks import load_digits_benchmark

    data = load_digits_benchmark()
    ids = [r.id for split in data.splits.values() for r in split]
    vectors = {image_id: np.ones(dim, dtype=np.float32) for image_id in ids[drop:]}
    if nan:
        vectors[ids[-1]][3] = np.nan
    np.savez(path, **vectors)
    return path
