"""Deployment files keep their security promises: the internet-facing parts cannot reach the signing key."""

from __future__ import annotations

import configparser
import json
import re

import pytest

from tests.support.paths import ROOT

UNITS = ROOT / "infra" / "systemd"
KEY = "/etc/anchorpipe/log.key"


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNITS / name)
    return parser["Service"]


def test_only_the_sequencer_is_handed_the_log_key():
    units = sorted(p.name for p in UNITS.glob("*.service"))
    assert "anchorpipe-sequencer.service" in units and "anchorpipe-api.service" in units
    for name in units:
        service = unit(name)
        if name == "anchorpipe-sequencer.service":
            assert service["LoadCredential"] == f"log.key:{KEY}"
            assert "ANCHORPIPE_LOG_KEY_FILE=%d/log.key" in service["Environment"].split()
        else:
            assert "LoadCredential" not in service, name
            assert service["UnsetEnvironment"] == "ANCHORPIPE_LOG_KEY_FILE", name
            assert service["InaccessiblePaths"].lstrip("-") == KEY, name


def test_the_api_runs_as_its_own_user():
    api, sequencer = unit("anchorpipe-api.service"), unit("anchorpipe-sequencer.service")
    assert api["User"] not in (sequencer["User"], "root")
    assert api["NoNewPrivileges"] == "yes" and api["ProtectSystem"] == "strict"


def test_the_procfile_binds_to_loopback_and_flower_needs_a_password():
    procs = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    assert "--host ${HOST:-127.0.0.1}" in procs["web"]
    assert "--address=127.0.0.1" in procs["flower"]
    assert re.search(r"--basic-auth=\$\{FLOWER_BASIC_AUTH:\?", procs["flower"])


def test_the_kubernetes_manifests_validate_against_the_kubernetes_schemas():
    import copy

    import kubernetes_validate
    import yaml

    from pipelines.stages import QUEUES

    docs = list(yaml.safe_load_all((ROOT / "infra/kubernetes/anchorpipe.yaml").read_text()))
    for doc in docs:  # strict: an unknown or misspelt field fails too
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    broken = copy.deepcopy(docs[1])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for name, d in deployments.items():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
        if name != "anchorpipe-beat":
            assert "livenessProbe" in container, name
    consumed = {q for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]
                if "worker" in c["command"] for q in c["command"][c["command"].index("-Q") + 1].split(",")}
    assert consumed == set(QUEUES)  # every queue has workers
    scalers = list(yaml.safe_load_all((ROOT / "infra/kubernetes/autoscaling.yaml").read_text()))  # KEDA: no schema
    for s in scalers:
        assert s["kind"] == "ScaledObject" and s["spec"]["scaleTargetRef"]["name"] in deployments
        assert s["spec"]["triggers"][0]["metadata"]["listName"] in QUEUES
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scalers} == {"anchorpipe-seal", "anchorpipe-archive",
                                                                       "anchorpipe-pull"}


def test_the_dashboard_and_the_alerts_use_metrics_that_exist():
    source = "".join((ROOT / "pipelines" / p / "metrics.py").read_text() for p in ("ops", "api"))
    defined = set(re.findall(r'"(anchorpipe_[a-z_]+)"', source))
    used = set()
    for path in ("infra/grafana/anchorpipe.json", "infra/prometheus/alerts.yml"):
        used |= set(re.findall(r"anchorpipe_[a-z_]+", (ROOT / path).read_text()))
    used -= {"anchorpipe_metrics_token"}
    bases = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert bases and bases <= defined, sorted(bases - defined)


def test_prometheus_scrapes_every_queue_at_the_port_its_unit_serves():
    """Each queue's worker is scraped, at the port the systemd units give it, labelled with its queue: an alert
    on a stage nobody scrapes could never fire."""
    import yaml

    from pipelines.stages import QUEUES

    units = "".join(p.read_text() for p in (ROOT / "infra/systemd").glob("*.service"))
    documented = {q: int(port) for port, q in re.findall(r"\b(91\d\d)\W+(?:for\s+)?([a-z]+)", units)}
    documented["anchor"] = int(re.search(r"ANCHORPIPE_METRICS_PORT=(\d+)", (
        ROOT / "infra/systemd/anchorpipe-sequencer.service").read_text()).group(1))
    config = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    workers = next(j for j in config["scrape_configs"] if j["job_name"] == "anchorpipe-workers")
    scraped = {c["labels"]["queue"]: int(t.rsplit(":", 1)[1]) for c in workers["static_configs"] for t in c["targets"]}
    assert set(scraped) == set(QUEUES), sorted(set(QUEUES) ^ set(scraped))
    assert {q: documented[q] for q in QUEUES} == scraped


def test_the_dashboard_sums_rates_over_processes_and_shows_zero_when_nothing_waits():
    """A rate per process draws one flat line per worker that never does the work; a gauge with no sample when
    nothing is pending shows "No data" where the operator wants 0."""
    panels = json.loads((ROOT / "infra/grafana/anchorpipe.json").read_text())["panels"]
    exprs = {t["expr"] for p in panels for t in p.get("targets", [])}
    rates = [e for e in exprs if "rate(" in e]
    assert rates and all(re.match(r"(sum|histogram_quantile)\b", e) for e in rates), rates
    pending = [e for e in exprs if "anchorpipe_oldest_pending_seconds" in e]
    assert pending and all(e.endswith("or vector(0)") for e in pending), pending


def test_every_worker_of_the_procfile_and_the_manifests_is_scraped():
    """The process lists as shipped: each Procfile worker serves its metrics at the port Prometheus scrapes for
    its queues, and each Kubernetes worker pod carries the scrape annotations for the port it serves on."""
    import yaml

    config = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    workers = next(j for j in config["scrape_configs"] if j["job_name"] == "anchorpipe-workers")
    scraped = {c["labels"]["queue"]: int(t.rsplit(":", 1)[1]) for c in workers["static_configs"] for t in c["targets"]}
    procs = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                 if ": " in line and not line.startswith("#"))
    seen = set()
    for name, command in procs.items():
        if " worker " not in command:
            continue
        queues = re.search(r"-Q (\S+)", command).group(1).split(",")
        port = 9100 + int(re.search(r"ANCHORPIPE_METRICS_BASE:-9100\} \+ (\d+)\)\)", command).group(1))
        assert scraped[queues[0]] == port, (name, queues, port)
        seen.update(queues)
    assert seen == set(scraped), sorted(set(scraped) ^ seen)  # every queue has a Procfile worker
    for doc in yaml.safe_load_all((ROOT / "infra/kubernetes/anchorpipe.yaml").read_text()):
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        if "worker" not in container["command"]:
            continue
        notes = pod["metadata"].get("annotations", {})
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert notes.get("prometheus.io/scrape") == "true", doc["metadata"]["name"]
        assert notes.get("prometheus.io/port") == env.get("ANCHORPIPE_METRICS_PORT"), doc["metadata"]["name"]


def test_every_supervisor_restarts_a_worker_that_exits():
    """A worker may exit when its broker vanishes (kombu's Redis transport, seen once in two Redis restarts):
    the systemd units restart every process except on a setting to fix (78), and the Kubernetes Deployments
    restart their containers; honcho (development only) stops everything, as docs/operations.md says."""
    import yaml

    for path in sorted(UNITS.glob("*.service")):
        service = unit(path.name)
        assert service["Restart"] == "always" and service["RestartPreventExitStatus"] == "78", path.name
        assert float(service.get("RestartSec", "0.1").rstrip("s")) <= 5, path.name
    for doc in yaml.safe_load_all((ROOT / "infra/kubernetes/anchorpipe.yaml").read_text()):
        if doc["kind"] == "Deployment":
            assert doc["spec"]["template"]["spec"].get("restartPolicy", "Always") == "Always", doc["metadata"]["name"]
    assert "stops every process when one exits, so it is not for production" in \
        (ROOT / "docs/operations.md").read_text().replace("\n", " ")
