"""How a job's spec sizes the engine's DataLoader for the process that runs it."""
import multiprocessing
import os

from leaderboard.submissions.specs import loader_workers


def _report(queue):
    queue.put(loader_workers())


def test_a_prefork_child_decodes_in_process():
    # Celery's prefork children are daemon processes, which may not start DataLoader workers.
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_report, args=(queue,), daemon=True)
    child.start()
    child.join(30)
    assert queue.get(timeout=5) == 0


def test_a_solo_or_threads_worker_decodes_in_parallel():
    assert loader_workers() == max(0, min(8, (os.cpu_count() or 1) - 1))
