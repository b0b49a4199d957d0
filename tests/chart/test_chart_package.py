"""Packaging: the chart archive holds only chart content, and the images are pinned and non-root.

Cases:
- `helm package` of the repository root (through helm-python-sdk) contains Chart.yaml, values,
  the schema, templates/, crds/ and files/, and nothing of the Python project (src/, tests/,
  .venv/, pyproject.toml, scripts/, Dockerfiles);
- both Dockerfiles start FROM pinned images (a version tag, never `latest`), the worker FROM the
  official Triton server image (nvcr.io/nvidia/tritonserver:<version>-py3), and switch to the
  non-root uid the chart's securityContext uses;
- the worker image runs `python -m argus.worker.serve` (the command the operator's pods use) and
  ships the model-repository template argus.worker.repository looks for;
- scripts/kind-up.sh is valid bash and builds the image names the chart and CRD default to.
"""

from __future__ import annotations

import re
import subprocess
import tarfile

import yaml

from argus.controlplane.builders import build_worker_deployment
from argus.spec import parse_spec
from tests.support.chart import ROOT

CHART_UID = yaml.safe_load((ROOT / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]


def test_package_contains_only_chart_content(tmp_path):
    import helm_python

    archive = helm_python.package(str(ROOT), destination=str(tmp_path))
    names = {n.split("/", 1)[1] for n in tarfile.open(archive).getnames() if "/" in n}
    assert {"Chart.yaml", "values.yaml", "values.schema.json", "crds/t2iservice.yaml",
            "files/rbac.json", "files/envoy-bootstrap.json", "templates/_helpers.tpl"} <= names
    top = {n.split("/")[0] for n in names}
    assert top <= {"Chart.yaml", "values.yaml", "values.schema.json", "templates", "crds", "files", "charts",
                   ".helmignore"}, top


def _dockerfile(path):
    text = (ROOT / path).read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f)
             for f in re.findall(r"^FROM (\S+)", text, re.M)]
    users = re.findall(r"^USER (\S+)$", text, re.M)
    return text, froms, users


def test_dockerfiles_are_pinned_and_non_root():
    for path in ("operator/Dockerfile", "worker_image/Dockerfile"):
        text, froms, users = _dockerfile(path)
        for image in froms:
            name, _, tag = image.partition(":")
            assert tag and tag != "latest" and re.search(r"\d", tag), f"{path}: {image}"
        assert users and users[-1] == f"{CHART_UID}:{CHART_UID}", f"{path}: {users}"
    _, froms, _ = _dockerfile("worker_image/Dockerfile")
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", froms[-1]), froms


def test_worker_image_runs_what_the_operator_runs():
    text, _, _ = _dockerfile("worker_image/Dockerfile")
    spec = parse_spec({"throughputTarget": 1, "gpus": 1, "levels": ["cache-k0"]})
    pod = build_worker_deployment("svc", "ns", spec, "cache-k0", 1)["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert f"CMD {str(command).replace(chr(39), chr(34))}" in text
    template = re.search(r"ARGUS_MODEL_TEMPLATE=(\S+)", text).group(1)
    copied = re.search(r"^COPY worker_image/model_repository (\S+)$", text, re.M).group(1)
    assert template == f"{copied}/argus_t2i" and (ROOT / "worker_image/model_repository/argus_t2i/config.pbtxt").exists()


def test_kind_script_is_valid_and_uses_the_default_images():
    script = (ROOT / "scripts" / "kind-up.sh").read_text()
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "kind-up.sh")], check=True)
    values = yaml.safe_load((ROOT / "values.yaml").read_text())
    assert f"CONTROLPLANE={values['image']['repository']}:$TAG" in script
    crd = yaml.safe_load((ROOT / "crds" / "t2iservice.yaml").read_text())
    default_image = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["model"]["properties"]["image"]["default"]
    assert default_image.startswith(re.search(r"WORKER=(\S+):\$TAG", script).group(1) + ":")
