"""The deployment files: docker-compose.yml is valid and complete, CI runs the README's test command."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_production_service():
    services = compose()["services"]
    assert {"web", "worker", "gpu-worker", "redis", "db"} <= set(services)
    assert "gunicorn" in services["web"]["command"]
    assert "celery -A leaderboard worker" in services["worker"]["command"]
    assert "-Q gpu" in services["gpu-worker"]["command"]


def test_gpu_worker_reserves_an_nvidia_device():
    devices = compose()["services"]["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_media_and_feature_volumes_are_persistent():
    data = compose()
    assert {"media", "features", "pgdata", "hf-cache"} <= set(data["volumes"])
    mounts = data["services"]["worker"]["volumes"]
    assert "media:/data/media" in mounts and "features:/data/features" in mounts
    assert all("hf-cache:/data/hf-cache" in data["services"][name]["volumes"] for name in ("web", "worker",
                                                                                          "gpu-worker"))


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian package) not installed")
def test_docker_compose_config_accepts_the_file(tmp_path):
    env = dict(os.environ, SECRET_KEY="test")
    run = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_compose_refuses_to_start_without_a_secret_key():
    assert "${SECRET_KEY:?" in (ROOT / "docker-compose.yml").read_text()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(\./shelfmark \w+)\s*$", readme, flags=re.M)
    assert "./shelfmark up" in commands and "./shelfmark test" in commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec ./shelfmark test\n" in ci


def _compose_config(**env) -> dict:
    run = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                         text=True, env=dict(os.environ, SECRET_KEY="test", **env), cwd=ROOT, check=True)
    return yaml.safe_load(run.stdout)["services"]


def _in_a_process_with(environment: dict, code: str) -> str:
    """Run `code` after django.setup() in a fresh interpreter whose environment is a service's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHELFMARK_")}
    env.update({key: str(value) for key, value in environment.items()}, DJANGO_SETTINGS_MODULE="leaderboard.settings")
    script = f"import django\ndjango.setup()\n{code}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True, timeout=120).stdout.strip()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian package) not installed")
@pytest.mark.parametrize("gpu_worker, queue", [({}, "gpu"), ({"SHELFMARK_GPU_WORKER": "false"}, "cpu")])
def test_compose_routes_jobs_to_the_gpu_worker_when_it_is_enabled(gpu_worker, queue):
    # was: only the GPU worker's service set SHELFMARK_GPU_WORKER, and the web process picks the queue
    services = _compose_config(**gpu_worker)
    chosen = _in_a_process_with(services["web"]["environment"],
                                "from leaderboard.submissions.services import job_queue\nprint(job_queue())")
    assert chosen == queue
    consumers = {name: re.search(r"-Q (\S+)", service["command"]).group(1)
                 for name, service in services.items() if " worker " in str(service.get("command", ""))}
    assert consumers == {"worker": "cpu", "gpu-worker": "gpu"}
    assert queue in consumers.values()


def test_the_gpu_worker_runs_the_solo_pool_so_it_may_start_loader_processes():
    # was: prefork, whose children are daemons that decode in-process (engine.loader_workers() == 0)
    command = compose()["services"]["gpu-worker"]["command"]
    assert "--pool solo" in command and "-c 1" not in command


def test_beat_runs_beside_the_workers_to_resend_jobs_that_missed_the_broker():
    # was: requeue_pending's docstring said "periodic" and nothing scheduled it
    assert "celery -A leaderboard beat" in compose()["services"]["beat"]["command"]
    schedule = _in_a_process_with({"SHELFMARK_REQUEUE_INTERVAL_S": "7"},
                                  "from leaderboard.celery import app\nprint(list(app.conf.beat_schedule.values()))")
    assert "'task': 'shelfmark.requeue_jobs'" in schedule and "'schedule': 7.0" in schedule


@pytest.mark.parametrize("value, queues", [("0", "cpu"), ("false", "cpu"), ("1", "cpu,gpu"), ("true", "cpu,gpu")])
def test_the_local_worker_reads_the_gpu_setting_as_the_site_does(value, queues):
    # was: launch.py read SHELFMARK_GPU_WORKER raw, so "0" counted as on
    command = _in_a_process_with({"SHELFMARK_GPU_WORKER": value},
                                 "from leaderboard.launch import worker_command\nprint(' '.join(worker_command('py')))")
    assert f" -Q {queues} " in command and " -B " in command


def test_the_image_builds_hashed_static_files_that_the_web_service_then_serves(tmp_path):
    # was: the image's collectstatic ran without the manifest, so production pages named plain, uncacheable files
    [build] = [line for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
               if "collectstatic" in line and line.startswith("RUN")]
    build_env = dict(re.findall(r"(\w+)=(\S+)", build.split("python manage.py")[0]))
    static_root = tmp_path / "staticfiles"
    _in_a_process_with({**build_env, "STATIC_ROOT": static_root},
                       "from django.core.management import call_command\n"
                       "call_command('collectstatic', interactive=False, verbosity=0)")
    assert (static_root / "staticfiles.json").exists()

    web = {key: value for key, value in compose()["x-app"]["environment"].items() if key == "DEBUG"}
    served = _in_a_process_with({**web, "STATIC_ROOT": static_root},
                                "from django.templatetags.static import static\nprint(static('css/site.css'))")
    assert re.fullmatch(r"/static/css/site\.[0-9a-f]{12}\.css", served), served
