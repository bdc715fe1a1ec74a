"""ImageNet-1k across workers: a replica in the official ILSVRC-2012 layout, extracted in shards by three real
Celery workers (one Celery group), a pool process killed mid-shard, and the scoring step that the last shard
sends: one result per protocol, each shard extracted once (the killed one twice)."""
import collections
import os
import signal
import time

import pytest
from submission_helpers import wait_for
from test_job_queue import start_workers, stop, submit_onnx

from leaderboard.registry.models import Dataset, Result
from leaderboard.submissions.models import EvaluationJob, ExtractionShard, Worker
from tests.workers.imagenet_replica import write_imagenet_replica

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def imagenet(digits, tmp_path, settings):
    """The imagenet1k board and a replica of 4 classes x 10 training + 5 validation images."""
    replica = write_imagenet_replica(tmp_path / "imagenet", classes=4, train_per_class=10, val_per_class=5,
                                     archives=False, extracted=True)
    Dataset.objects.create(slug="imagenet1k", name="ImageNet-1k", task_family=digits.task_family,
                           metric=digits.metric, engine_benchmark="imagenet1k",
                           protocol_version="shelfmark-protocols/1.0")
    settings.SHELFMARK_DATA_ROOTS = f"imagenet1k={tmp_path / 'imagenet'}"
    settings.SHELFMARK_CPU_QUEUE = "imagenet-shards"   # the session's worker does not consume it
    return replica


def test_imagenet_replica_extracted_in_shards_by_three_workers_to_one_result(worker, imagenet, make_user, tmp_path,
                                                                              settings, celery_app):
    env = {"SHELFMARK_DATA_ROOTS": settings.SHELFMARK_DATA_ROOTS, "SHELFMARK_SHARD_SIZE": "10",
           "SHELFMARK_CPU_QUEUE": "imagenet-shards", "SHELFMARK_FEATURE_CACHE": str(tmp_path / "shared-cache")}
    workers = start_workers(worker, "imagenet-shards", {f"shard{i}": tmp_path / f"shard{i}.log" for i in range(3)},
                            **env)
    try:
        names = list(Worker.objects.filter(name__startswith="shard").values_list("name", flat=True))
        wait_for(lambda: len(celery_app.control.ping(destination=names, timeout=0.5)) == 3, 60,
                 what="the three workers to consume")   # each takes shards from the first one on
        submission = submit_onnx(make_user("ada"), tmp_path, name="Tiny conv (ImageNet shards)", benchmarks=[
            "imagenet1k"], protocols=[])
        job = submission.jobs.get()
        victim = None
        while victim is None:   # a pool process killed while it runs a shard (not one that just finished it)
            wait_for(lambda: ExtractionShard.objects.filter(job=job, status="running").exists(), 120,
                     interval=0.05, what="a shard to run")
            running = ExtractionShard.objects.filter(job=job, status="running").first()
            if running is None:
                continue
            os.kill(running.worker_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            victim = ExtractionShard.objects.filter(pk=running.pk, status="running", task_id=running.task_id,
                                                    worker_pid=running.worker_pid).first()

        wait_for(lambda: EvaluationJob.objects.get(pk=job.pk).is_finished, 240, what="the sharded job to finish")
        job.refresh_from_db()
        assert job.status == "done", f"{job.error}\n{job.log}"
        print(f"\nimagenet1k replica: 6 shards on 3 workers, one pool process killed mid-shard; "
              f"{time.monotonic() - killed_at:.1f}s from SIGKILL to the result; shards per worker: "
              f"{sorted(collections.Counter(s.worker for s in job.shards.all()).values())}\n{job.log}")
        shards = list(job.shards.order_by("index"))
        assert [(s.split, s.start, s.stop) for s in shards] == [
            ("train", 0, 10), ("train", 10, 20), ("train", 20, 30), ("train", 30, 40), ("val", 0, 10),
            ("val", 10, 20)]
        assert all(s.status == "done" and s.done == s.images for s in shards)
        assert {s.pk: s.attempts for s in shards} == {s.pk: 2 if s.pk == victim.pk else 1 for s in shards}
        # the shards went to the queue's workers as the broker handed them out: more than one of them took some
        # (a worker whose pool process is still starting may see the others take all six)
        assert len({s.worker.split("@")[0] for s in shards}) >= 2
        assert sorted(job.job_results.values_list("protocol", flat=True)) == ["knn", "linear_probe"]
        assert Result.objects.filter(method__name="Tiny conv (ImageNet shards)").count() == 2
        assert job.evaluation["throughput"]["images_extracted"] == 0   # the scoring step read the shards' cache
        assert "extraction of 60 images in 6 shards" in job.log and "6 shards extracted (60 images" in job.log
    finally:
        for process in workers:
            stop(process)
