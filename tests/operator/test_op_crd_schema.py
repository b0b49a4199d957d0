"""The T2IService CRD schema (crds/t2iservice.yaml), validated with a JSON-schema validator.

Cases:
- the CRD is structural: every property declares a type; names, short name, status subresource, printer columns;
- the CRD's spec properties are exactly spec.py's fields (camelCase), and their defaults agree with spec.py;
- each example manifest in manifests/examples validates and parses with argus.spec;
- bad manifests are rejected, each for the stated reason (table: missing fields, ranges, enums, patterns, types).
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from argus.spec import T2IServiceSpec, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds/t2iservice.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
EXAMPLES = sorted((ROOT / "manifests/examples").glob("*.yaml"))
# OpenAPI v3.0 (what Kubernetes speaks) has boolean exclusiveMinimum: draft 4 semantics.
VALIDATOR = jsonschema.Draft4Validator(SCHEMA)


def errors(doc: dict) -> list[jsonschema.ValidationError]:
    """All schema violations of a manifest."""
    return list(VALIDATOR.iter_errors(doc))


def _walk(schema: dict, path: str = ""):
    yield path, schema
    for k, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{k}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def test_crd_is_structural_with_names_status_and_columns():
    for path, sub in _walk(SCHEMA):
        assert "type" in sub, f"{path or '<root>'} has no type: the schema would not be structural"
    names = CRD["spec"]["names"]
    assert (CRD["spec"]["group"], VERSION["name"], names["plural"], names["kind"]) == \
        ("argus.dev", "v1alpha1", "t2iservices", "T2IService")
    assert names["shortNames"] == ["t2i"]
    assert VERSION["subresources"] == {"status": {}}
    cols = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert cols["Target"] == ".spec.throughputTarget" and cols["Floor"] == ".spec.qualityFloor"
    assert cols["GPUs"] == ".spec.gpus" and cols["Throughput"] == ".status.observedThroughput"
    assert cols["Quality"] == ".status.averageQuality" and 'type=="Ready"' in cols["Ready"]


def _aliases(model) -> dict[str, object]:
    return {(f.alias or n): f for n, f in model.model_fields.items()}


@pytest.mark.parametrize("schema_path,model", [
    ((), T2IServiceSpec),
    (("model",), T2IServiceSpec.model_fields["model"].default_factory().__class__),
    (("cache",), T2IServiceSpec.model_fields["cache"].default_factory().__class__),
    (("workerResources",), T2IServiceSpec.model_fields["worker_resources"].default_factory().__class__),
])
def test_crd_fields_and_defaults_match_spec_model(schema_path, model):
    node = SCHEMA["properties"]["spec"]
    for p in schema_path:
        node = node["properties"][p]
    fields = _aliases(model)
    assert set(node["properties"]) == set(fields)
    for name, f in fields.items():
        prop = node["properties"][name]
        if "default" in prop and prop["type"] != "object":
            default = f.default_factory() if f.default_factory else f.default
            assert prop["default"] == default, f"default of {name}: CRD {prop['default']!r} != spec.py {default!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_and_parse(path):
    doc = yaml.safe_load(path.read_text())
    assert errors(doc) == []
    name, spec = parse_manifest(doc)
    assert name == doc["metadata"]["name"] and spec.gpus == doc["spec"]["gpus"]


BASE = yaml.safe_load((ROOT / "manifests/examples/laptop.yaml").read_text())


def _with(change: dict | None = None, drop: str | None = None) -> dict:
    doc = copy.deepcopy(BASE)
    for dotted, value in (change or {}).items():
        node = doc["spec"]
        *head, last = dotted.split(".")
        for p in head:
            node = node.setdefault(p, {})
        node[last] = value
    if drop:
        del doc["spec"][drop]
    return doc


BAD = [
    # (case, manifest, failing path, validator keyword)
    ("negative GPUs", _with({"gpus": -1}), "spec.gpus", "minimum"),
    ("zero GPUs", _with({"gpus": 0}), "spec.gpus", "minimum"),
    ("fractional GPUs", _with({"gpus": 1.5}), "spec.gpus", "type"),
    ("floor above 100", _with({"qualityFloor": 101}), "spec.qualityFloor", "maximum"),
    ("negative floor", _with({"qualityFloor": -5}), "spec.qualityFloor", "minimum"),
    ("zero throughput", _with({"throughputTarget": 0}), "spec.throughputTarget", "minimum"),
    ("missing throughputTarget", _with(drop="throughputTarget"), "spec", "required"),
    ("missing gpus", _with(drop="gpus"), "spec", "required"),
    ("unknown level family", _with({"levels": ["cache-k0", "turbo-3"]}), "spec.levels.1", "pattern"),
    ("upper-case level", _with({"levels": ["CACHE-K0"]}), "spec.levels.0", "pattern"),
    ("no levels", _with({"levels": []}), "spec.levels", "minItems"),
    ("control period too short", _with({"controlPeriod": 0.5}), "spec.controlPeriod", "minimum"),
    ("zero latency SLO", _with({"latencySLO": 0}), "spec.latencySLO", "minimum"),
    ("one step", _with({"model.steps": 1}), "spec.model.steps", "minimum"),
    ("bad Prometheus URL", _with({"prometheusUrl": "prometheus:9090"}), "spec.prometheusUrl", "pattern"),
    ("bad toleration operator", _with({"tolerations": [{"key": "a", "operator": "Maybe"}]}),
     "spec.tolerations.0.operator", "enum"),
    ("node selector value not a string", _with({"nodeSelector": {"gpu": 1}}), "spec.nodeSelector.gpu", "type"),
    ("tiny cache", _with({"cache.maxBytes": 1000}), "spec.cache.maxBytes", "minimum"),
    ("storage class not a DNS name", _with({"cache.storageClassName": "Fast_SSD"}), "spec.cache.storageClassName",
     "pattern"),
    ("spec not an object", {**BASE, "spec": "big"}, "spec", "type"),
]


@pytest.mark.parametrize("case,doc,where,keyword", BAD, ids=[b[0] for b in BAD])
def test_bad_manifests_rejected_for_the_stated_reason(case, doc, where, keyword):
    errs = errors(doc)
    assert errs, f"{case}: accepted"
    found = {(".".join(str(p) for p in e.absolute_path), e.validator) for e in errs}
    assert (where, keyword) in found, f"{case}: rejected for {found}, not {(where, keyword)}"


def test_unknown_fields_are_not_errors_but_are_not_in_the_schema():
    """The API server prunes unknown fields of a structural schema instead of rejecting them."""
    doc = _with({"turbo": True})
    assert errors(doc) == []
    assert "turbo" not in SCHEMA["properties"]["spec"]["properties"]
    assert SCHEMA["properties"]["spec"].get("x-kubernetes-preserve-unknown-fields") is not True


# --- CEL rules (x-kubernetes-validations), evaluated with a real CEL interpreter (cel-python) ---

def _rules():
    """(schema path, rule) for every CEL rule (x-kubernetes-validations entry) in the CRD."""
    return [(path, r) for path, sub in _walk(SCHEMA) for r in sub.get("x-kubernetes-validations", [])]


def _at(doc: dict, path: str):
    node = doc
    for part in path.strip(".").split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def defaulted(doc: dict, schema: dict = SCHEMA) -> dict:
    """The manifest as the API server validates it: the schema's defaults filled in (structural defaulting)."""
    doc = copy.deepcopy(doc)

    def fill(node, sub):
        if isinstance(node, dict) and sub.get("properties"):
            for k, prop in sub["properties"].items():
                if k not in node and "default" in prop:
                    node[k] = copy.deepcopy(prop["default"])
                if k in node:
                    fill(node[k], prop)
        elif isinstance(node, list) and isinstance(sub.get("items"), dict):
            for item in node:
                fill(item, sub["items"])

    fill(doc, schema)
    return doc


def cel_violations(doc: dict) -> list[str]:
    """Messages of the CEL rules a manifest breaks, after defaulting (as in Kubernetes); rules whose object is
    absent do not run; a rule that fails to evaluate counts as broken; messageExpression wins over message."""
    import celpy

    env = celpy.Environment()
    doc = defaulted(doc)
    broken = []
    for path, rule in _rules():
        obj = _at(doc, path)
        if obj is None:
            continue
        activation = {"self": celpy.json_to_cel(obj)}
        try:
            ok = env.program(env.compile(rule["rule"])).evaluate(activation)
        except celpy.CELEvalError as e:  # Kubernetes rejects the object when a rule cannot be evaluated
            ok = e
        if not (isinstance(ok, celpy.celtypes.BoolType) and bool(ok)):
            expr = rule.get("messageExpression")
            broken.append(str(env.program(env.compile(expr)).evaluate(activation)) if expr else rule["message"])
    return broken


def test_cel_rules_compile_and_cover_the_operator_cross_field_checks():
    rules = _rules()
    assert {p for p, _ in rules} == {".spec", ".spec.model", ".spec.levels"}
    assert len(rules) == 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_the_cel_rules(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "T2IService":
            assert cel_violations(doc) == []


CEL_BAD = [
    ("two weights volumes", _with({"model.weightsPath": "/w", "model.weightsPvc": "weights",
                                   "model.weightsHostPath": "/data/w"}), "exclusive"),
    ("weights volume without mount point", _with({"model.weightsPvc": "weights"}), "weightsPath is required"),
    ("more full-quality replicas than GPUs", _with({"gpus": 2, "minFullQualityReplicas": 3}),
     "minFullQualityReplicas=3 exceeds gpus=2"),
    ("one GPU, the default full-quality replica plus one", _with({"gpus": 1, "minFullQualityReplicas": 2}),
     "minFullQualityReplicas=2 exceeds gpus=1"),
    ("levels without cache-k0", _with({"levels": ["cache-k5", "steps-20"]}),
     "must include the full-quality level 'cache-k0'"),
    ("cache levels with the cache off", _with({"cache.enabled": False}),
     "need the latent cache, which cache.enabled=false turns off"),
]


@pytest.mark.parametrize("case,doc,needle", CEL_BAD, ids=[b[0] for b in CEL_BAD])
def test_cel_rules_reject_what_the_operator_rejects(case, doc, needle):
    """Each CEL rejection is also an operator (argus.spec) rejection, with the same wording."""
    assert errors(doc) == [], f"{case}: the plain schema already rejects it"
    broken = cel_violations(doc)
    assert len(broken) == 1 and needle in broken[0], f"{case}: CEL said {broken}"
    with pytest.raises(ValueError, match=needle):
        parse_manifest(doc)


def test_cel_rules_accept_one_weights_volume_and_equal_replicas():
    ok = _with({"model.weightsPath": "/w", "model.weightsPvc": "weights", "gpus": 2, "minFullQualityReplicas": 2})
    assert errors(ok) == [] and cel_violations(ok) == []
    parse_manifest(ok)


@pytest.mark.parametrize("gpus", [0, -1, -100])
def test_bad_gpus_is_one_precise_error(gpus):
    """`gpus: 0` is the schema's minimum error alone: the CEL rule does not also blame
    minFullQualityReplicas, which the user never set (it defaults to 1)."""
    doc = _with({"gpus": gpus})
    assert "minFullQualityReplicas" not in doc["spec"] and defaulted(doc)["spec"]["minFullQualityReplicas"] == 1
    found = {(".".join(str(p) for p in e.absolute_path), e.validator) for e in errors(defaulted(doc))}
    assert found == {("spec.gpus", "minimum")}
    assert cel_violations(doc) == []
    with pytest.raises(ValueError, match="spec.gpus"):
        parse_manifest(doc)


def test_cel_rules_do_not_fail_on_a_missing_gpus():
    """A missing gpus is the schema's `required` error; the CEL rule must not fail to evaluate on it."""
    assert cel_violations(_with(drop="gpus")) == []


@pytest.mark.parametrize("levels", [["cache-k0"], ["steps-20", "cache-k0"], ["model-tiny", "cache-k0", "cache-k5"]])
def test_cel_accepts_levels_with_cache_k0_anywhere(levels):
    assert cel_violations(_with({"levels": levels})) == []


def test_cache_off_with_only_uncached_levels_passes_cel():
    doc = _with({"cache.enabled": False, "levels": ["cache-k0", "steps-10"], "cache.storageClassName": "nfs"})
    assert errors(doc) == [] and cel_violations(doc) == []
    parse_manifest(doc)
