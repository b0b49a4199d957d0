"""The bundled world model and its measured profile and predictor fit the code and each other.

- the demo service (`argus up` without -f) is the world model, loaded through `model.weightsPath`;
- the weights are safetensors, at most 30 MB, with a model card and the settings they were measured with;
- the stock `StableDiffusionPipeline.from_pretrained(dir)` loads them;
- the level profile and the predictor are for this model, its levels and its steps (a change of the
  world's levels or steps fails here: regenerate them, see src/argus/data/predictors/README.md).
"""

from __future__ import annotations

import json

from argus.local.defaults import DEMO_MANIFEST, WORLD_LEVELS, WORLD_MODEL, WORLD_PREDICTOR, world_manifest
from argus.world.model import GUIDANCE_FILE


def test_demo_service_is_the_bundled_world_model():
    assert DEMO_MANIFEST == world_manifest()
    assert DEMO_MANIFEST["spec"]["model"]["weightsPath"] == str(WORLD_MODEL)


def test_weights_card_and_settings():
    files = list(WORLD_MODEL.rglob("*.safetensors"))
    assert {f.parent.name for f in files} == {"unet", "vae", "text_encoder"}
    assert sum(f.stat().st_size for f in files) <= 30 * 2**20
    assert not list(WORLD_MODEL.rglob("*.bin")) and not list(WORLD_MODEL.rglob("*.pt"))
    card = (WORLD_MODEL / "README.md").read_text()
    for needle in ("## Data", "## Training", "Seed", "| single_object |", "| steps-5 |", "| cache-k5 |"):
        assert needle in card, needle
    meta = json.loads((WORLD_MODEL / GUIDANCE_FILE).read_text())
    assert meta["guidance_scale"] > 0 and 0 <= meta["measured_full_score"] <= 100


def test_stock_diffusers_loads_it():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(WORLD_MODEL), local_files_only=True)
    assert pipe.unet.config.sample_size * 4 == DEMO_MANIFEST["spec"]["model"]["height"]


def test_profile_and_predictor_are_this_models():
    from argus.policy.profile import load_profile
    from argus.prompt.embedder import MINILM_NAME
    from argus.prompt.predictor import load_predictor

    spec = DEMO_MANIFEST["spec"]
    table = load_profile(WORLD_LEVELS)
    assert table.model == "world-sd" and [lp.level for lp in table.levels] == spec["levels"]
    assert "exact" in table.levels[1].note  # quality measured by the exact scorer, not assumed
    pred = load_predictor(WORLD_PREDICTOR, encoder=MINILM_NAME, model="world-sd", levels=spec["levels"],
                          steps=spec["model"]["steps"])
    assert pred.dim == 384
