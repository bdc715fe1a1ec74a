"""Email through Django's mail backend when an evaluation finishes or fails, sent once the job's transaction has
committed; a user without an address, or a mail server that is down, never fails the job."""
import socket

import pytest
from django.core import mail
from insights_helpers import evaluation, running_job

from leaderboard.insights.notifications import notify
from leaderboard.submissions.models import EvaluationJob
from leaderboard.submissions.services import job_complete, job_fail


@pytest.fixture
def owner(make_user):
    user = make_user("ada")
    user.email = "ada@example.org"
    user.save()
    return user


def test_the_submitter_gets_an_email_when_the_evaluation_is_done(owner, digits, django_capture_on_commit_callbacks):
    job = running_job(owner, digits)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job_complete(job.pk, evaluation(0.8512, 0.8421, 0.8597), duration_s=3.0)
        assert mail.outbox == []                       # nothing before the result is committed
    assert len(callbacks) >= 1
    [message] = mail.outbox
    assert message.to == ["ada@example.org"]
    assert message.subject == "Shelfmark: ResNet-50 (torchvision) on Digits (demo): 85.12 %"
    assert "85.12 % (95% interval 84.21–85.97)" in message.body
    assert f"http://127.0.0.1:8000/submissions/{job.submission_id}/" in message.body
    assert "http://127.0.0.1:8000/datasets/digits/" in message.body      # public: on the live board

    with django_capture_on_commit_callbacks(execute=True):
        job_complete(job.pk, evaluation(0.9, 0.89, 0.91), duration_s=3.0)    # a second call changes nothing
    assert len(mail.outbox) == 1


def test_a_failed_evaluation_sends_its_message_but_not_the_traceback(owner, digits, django_capture_on_commit_callbacks):
    job = running_job(owner, digits, public=False)
    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job.pk, "The weights file does not match resnet50.", details="Traceback: secret/path.py line 3")
    [message] = mail.outbox
    assert message.subject == "Shelfmark: the evaluation of ResNet-50 (torchvision) on Digits (demo) failed"
    assert "The weights file does not match resnet50." in message.body
    assert "secret/path.py" not in message.body


def test_a_user_without_an_email_address_gets_none_and_the_job_is_done(make_user, digits,
                                                                       django_capture_on_commit_callbacks):
    job = running_job(make_user("bob"), digits)
    with django_capture_on_commit_callbacks(execute=True):
        job_complete(job.pk, evaluation(0.85, 0.84, 0.86), duration_s=1.0)
    assert mail.outbox == []
    assert EvaluationJob.objects.get(pk=job.pk).status == EvaluationJob.Status.DONE


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]              # nothing listens there once the probe is closed


def test_a_mail_server_that_is_down_never_fails_the_job(owner, digits, settings, caplog,
                                                        django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 2
    job = running_job(owner, digits)
    with django_capture_on_commit_callbacks(execute=True):
        job_complete(job.pk, evaluation(0.85, 0.84, 0.86), duration_s=1.0)
    job.refresh_from_db()
    assert job.status == EvaluationJob.Status.DONE and job.result is not None
    assert "could not email user" in caplog.text


def test_notify_is_the_door_other_apps_send_through(owner, make_user, settings):
    assert notify(owner, "Your contribution was accepted\nBcc: everyone", "Thank you.") is True
    assert mail.outbox[-1].subject == "Your contribution was accepted Bcc: everyone"   # one header line
    assert notify(make_user("no-address"), "s", "b") is False
    assert notify(None, "s", "b") is False
    owner.is_active = False
    assert notify(owner, "s", "b") is False
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 2
    owner.is_active = True
    assert notify(owner, "s", "b") is False
