"""`argus train-model`: the world model in the stock diffusers layout, trained resumably.

A few steps of every phase (the real recipe runs ~2 hours): the exported directory loads with the stock
`StableDiffusionPipeline.from_pretrained` and through the worker's own path (`weights_path`, as real SD
weights), and generates a 64x64 image; a second run with more UNet steps resumes from the checkpoint
instead of starting over; every word of the grammar is one token of the tokenizer; bad settings exit 2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from argus import cli
from argus.world import model

pytestmark = pytest.mark.timeout(600)
SMALL = ["--vae-steps", "2", "--decoder-steps", "2", "--dataset-size", "16", "--batch", "4",
         "--checkpoint-every", "1", "--threads", "1"]


def test_every_grammar_word_is_one_token(tmp_path):
    from transformers import CLIPTokenizer

    model.write_tokenizer(tmp_path)
    tok = CLIPTokenizer.from_pretrained(str(tmp_path))
    for w in model.grammar_words():
        assert len(tok(w).input_ids) == 3, w  # BOS, the word, EOS
    assert len(tok("an astronaut riding a horse").input_ids) > 3  # free-form text still tokenizes


def test_train_export_load_and_resume(tmp_path, capsys):
    out = tmp_path / "train"
    assert cli.main(["train-model", "--out", str(out), "--unet-steps", "2", *SMALL]) == 0
    pipe_dir = out / "pipeline"
    assert (pipe_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "training-curve.png").stat().st_size > 1000

    from diffusers import StableDiffusionPipeline

    stock = StableDiffusionPipeline.from_pretrained(str(pipe_dir), local_files_only=True)
    img = stock("a photo of a red circle", num_inference_steps=2, height=64, width=64, output_type="np").images
    assert img.shape == (1, 64, 64, 3)

    from argus.levels import parse_level
    from argus.worker.pipeline import DiffusionPipeline, GenRequest, PipelineSettings

    worker = DiffusionPipeline(PipelineSettings(steps=4, weights_path=str(pipe_dir), model_name="world-sd"))
    assert worker.identity == "world-sd" and worker.vae_scale == 4
    res = worker.generate([GenRequest("two blue squares", 1, 64, 64)], parse_level("cache-k0", 4), checkpoints=(2,))
    assert res[0].image.shape == (64, 64, 3) and res[0].image.dtype == np.uint8 and 2 in res[0].checkpoints

    assert cli.main(["train-model", "--out", str(out), "--unet-steps", "3", *SMALL]) == 0
    log = json.loads((out / "train-log.json").read_text())
    assert [s for s, _ in log["unet_loss"]] == [0, 1, 2]  # resumed at step 2: the first two were not run again
    assert [i["unet_steps"] for i in log["invocations"]] == [2, 3] and log["settings"]["unet_steps"] == 3


def test_bad_settings_exit_2(tmp_path, capsys):
    assert cli.main(["train-model", "--out", str(tmp_path), "--unet-steps", "0"]) == 2
    assert "--unet-steps must be at least 1" in capsys.readouterr().err
