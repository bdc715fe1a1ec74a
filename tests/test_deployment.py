"""The deployment files: docker-compose.yml is valid and complete, CI runs the README's test command."""
import os
import re
import shutil
import subprocess
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
    assert {"media", "features", "pgdata"} <= set(data["volumes"])
    mounts = data["services"]["worker"]["volumes"]
    assert "media:/data/media" in mounts and "features:/data/features" in mounts


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
