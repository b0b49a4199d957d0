"""Bundled data: the DiffusionDB prompt subset and the demo's profile/predictor still fit the code.

Cases:
- 300 bundled prompts load, none empty or over the length limit
- the demo predictor loads for the demo service (tiny model identity, its levels, 20 steps, MiniLM);
  a change of the tiny model's configs fails here: regenerate (src/argus/data/predictors/README.md)
- the demo quality profile is complete and parses; its level table loads with the optimizer's load_profile
"""

from __future__ import annotations

from argus.local.defaults import TINY_MANIFEST
from argus.prompt.embedder import MINILM_NAME
from argus.prompt.predictor import demo_predictor_path, load_predictor
from argus.prompt.profile_data import read_profile
from argus.prompt.prompt_sets import MAX_PROMPT_CHARS, bundled_prompts_path, load_prompts


def test_bundled_prompts():
    prompts = load_prompts(bundled_prompts_path())
    assert len(prompts) == 300 and all(0 < len(p) <= MAX_PROMPT_CHARS for p in prompts)


def test_demo_predictor_fits_the_demo_service():
    from argus.policy.profile import load_profile
    from argus.worker.tiny import tiny_identity

    spec = TINY_MANIFEST["spec"]
    path = demo_predictor_path()
    pred = load_predictor(path, encoder=MINILM_NAME, model=tiny_identity(), levels=spec["levels"],
                          steps=spec["model"]["steps"])
    assert pred.dim == 384
    prof = read_profile(path.with_name("demo-tiny.profile.jsonl"))
    assert prof.complete and prof.header["model"] == tiny_identity()
    table = load_profile(path.with_name("demo-tiny.levels.json"))
    assert [lp.level for lp in table.levels] == spec["levels"]
