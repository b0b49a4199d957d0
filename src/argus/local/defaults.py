"""The built-in demo service for `argus up` without `-f`: tiny model, few steps, two process slots."""

DEMO_MANIFEST = {
    "apiVersion": "argus.dev/v1alpha1",
    "kind": "T2IService",
    "metadata": {"name": "demo"},
    "spec": {
        "model": {"name": "tiny-sd", "steps": 20, "height": 64, "width": 64},
        "levels": ["cache-k0", "cache-k5", "cache-k10", "steps-10", "steps-5"],
        "throughputTarget": 1.0,
        "qualityFloor": 90,
        "gpus": 2,
        "latencySLO": 20,
        "controlPeriod": 5,
        # The demo's load changes within seconds (a few-minute trace); give capacity back on that scale.
        "scaleDownHalfLife": 10,
    },
}
