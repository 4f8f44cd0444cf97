"""Generated files are committed; they must match what the generator produces now."""

import json
import re
import shutil
import subprocess

import pytest
import yaml

from obslab import settings, topology
from obslab.generators import generate, promconfig
from obslab.profiles import FAST, PRODUCTION


def test_committed_generated_files_are_fresh():
    assert generate.stale_files() == [], "run `obslab generate` and commit the result"


def test_every_generated_file_says_it_is_generated_and_how_to_regenerate():
    for relative in generate.generated_files():
        text = (settings.repo_root() / relative).read_text()
        if relative.endswith(".json"):   # JSON holds no comment: Grafana shows the dashboard's description
            description = json.loads(text)["description"]
            assert "`obslab generate`" in description and "DO NOT EDIT" in description, relative
            continue
        assert text.startswith(("# GENERATED", "<!-- GENERATED")) and re.search(
            r"`obslab (rules )?generate`", text.splitlines()[0]), relative


def test_the_staleness_check_notices_a_hand_edit(tmp_path):
    for relative, produce in generate.generated_files().items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(produce())
    assert generate.stale_files(tmp_path) == []
    path = tmp_path / "prometheus/prometheus.yml"
    path.write_text(path.read_text().replace("10s", "11s"))
    assert generate.stale_files(tmp_path) == ["prometheus/prometheus.yml"]


def test_seed_scrape_intervals_in_the_production_profile():
    config = promconfig.config("compose", PRODUCTION, rules_glob="/r/*.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["gateway"]["scrape_interval"] == "10s"
    assert jobs["transactions"]["static_configs"][0]["targets"] == ["transactions:8083"]
    assert config["global"]["scrape_interval"] == "15s"
    assert "trace-sink" not in jobs  # native only


def test_native_and_compose_differ_only_in_addresses(tmp_path):
    """... and in where Prometheus reads the password of Alertmanager's API (the lab's secrets
    natively, its mount of the secrets volume in compose)."""
    native = promconfig.config("native", PRODUCTION, rules_glob="/r/*.yml", offset=100, secrets_dir=tmp_path)
    compose = promconfig.config("compose", PRODUCTION, rules_glob="/r/*.yml")
    compose_jobs = {job["job_name"]: job for job in compose["scrape_configs"]}
    for job in native["scrape_configs"]:
        if job["job_name"] == "trace-sink":
            continue
        job = json.loads(json.dumps(job).replace(str(tmp_path.resolve()), "/run/obslab/secrets"))
        twin = compose_jobs.pop(job["job_name"])
        assert job["static_configs"][0]["targets"][0].startswith("127.0.0.1:")
        assert {k: v for k, v in job.items() if k != "static_configs"} == \
            {k: v for k, v in twin.items() if k != "static_configs"}
    # What is left only exists in compose: the Collector's span metrics and its own telemetry.
    assert set(compose_jobs) == {job for comp in topology.COMPOSE_ONLY if comp.scraped
                                 for job, _ in comp.scrape_jobs()}
    assert compose_jobs


@pytest.mark.parametrize("profile", [PRODUCTION, FAST], ids=lambda p: p.name)
def test_promtool_accepts_the_generated_configuration(tmp_path, profile):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run `obslab doctor --install`"
    rules = tmp_path / "rules"
    rules.mkdir()
    path = tmp_path / "prometheus.yml"
    path.write_text(promconfig.render("native", profile, rules_glob=str(rules / "*.yml")))
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(path.read_text())["global"]["evaluation_interval"] == f"{profile.evaluation_s}s"
