"""Write the world model's model card (README.md in the pipeline directory) from measurements only.

    .venv/bin/python bench/world_model_card.py --model src/argus/data/models/world-sd \
        --train-log WORK/train-log.json --bench out/bench-world-model/result.json [--note TEXT]

The card's numbers come from two files this project's own commands write: the training log of
`argus train-model` (settings, phase wall times, final losses) and the result of
`bench/bench_world_model.py` (the exact scorer's tables on held-out prompts). Nothing is typed in by hand
except `--note` (provenance that the log cannot know, e.g. a run resumed with more steps).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_world_model import markdown  # noqa: E402


def _mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*.safetensors")) / 2**20


def _decoder_steps(log: dict, log_path: Path | None) -> int | str:
    """Decoder steps run: the settings', else the steps logged (the phase may run in its own process, with
    its own log `train-log-decoder.json` beside the main one)."""
    if "decoder_steps" in log["settings"]:
        return log["settings"]["decoder_steps"]
    side = log_path.with_name("train-log-decoder.json") if log_path else None
    steps = (json.loads(side.read_text()) if side and side.is_file() else log).get("decoder_loss", [])
    return steps[-1][0] + 1 if steps else "?"


def card(model: Path, log: dict, res: dict, note: str | list[str] = "", log_path: Path | None = None) -> str:
    s = log["settings"]
    sec = log.get("seconds", {})
    unet_last = log["unet_loss"][-1] if log.get("unet_loss") else None
    from argus.world import grammar, model as wm, render

    lines = [
        "# world-sd: a small text-to-image model of Argus's compositional world",
        "",
        "A latent diffusion model in the stock diffusers layout (`StableDiffusionPipeline`: AutoencoderKL,",
        "UNet2DConditionModel, CLIPTextModel + CLIPTokenizer, DDIM), trained from scratch on CPU by",
        "`argus train-model` on images drawn by `argus.world.render`. The worker loads it through",
        "`model.weightsPath`, the path real SD weights take; `StableDiffusionPipeline.from_pretrained(dir)` loads it.",
        "",
        "## Data",
        f"- Prompts: the world's grammar (`argus.world.grammar`), {len(grammar.all_prompts()):,} distinct prompts over",
        "  GenEval's six task types; training uses only the train split (90 %, by SHA-256 of the text),",
        f"  {s['dataset_size']:,} prompts drawn with the task mix of `argus.world.training.TASK_MIX`, one rendered",
        "  image each (random layout, size, background and colour jitter). Every number below is on the",
        "  held-out split, which the model never saw.",
        "- Object size (half-size of its box, pixels, by how many objects the scene has): "
        + ", ".join(f"{n}: {lo}-{hi}" for n, (lo, hi) in render.R_BY_COUNT.items()) + " (`argus.world.render`).",
        f"- Resolution: {wm.IMAGE_SIZE}x{wm.IMAGE_SIZE} pixels, latent {wm.IMAGE_SIZE // 4}x{wm.IMAGE_SIZE // 4}x4.",
        f"- Weights: {_mb(model):.1f} MB of safetensors.",
        "",
        "## Training",
        f"- Seed {s['seed']}; VAE {s['vae_steps']} steps x {s['vae_batch']}; UNet + text encoder "
        f"{unet_last[0] + 1 if unet_last else '?'} steps x {s['batch']} ({s.get('prediction', 'epsilon')}, min-SNR-5, "
        f"lr {s['lr']}, EMA {s['ema_decay']}, {int(100 * s['drop_prompt'])} % prompt dropout); decoder refinement "
        f"{_decoder_steps(log, log_path)} steps.",
        f"- Sampling: DDIM, {res['steps']} steps, classifier-free guidance {res['guidance']} (`argus_model.json`).",
        "- Wall time by phase (this machine, 2 CPU cores, torch at "
        f"{s['threads']} thread(s) per phase): " + ", ".join(f"{k} {v / 60:.0f} min" for k, v in sec.items()) + ".",
    ]
    for n in ([note] if isinstance(note, str) else note):
        if n:
            lines += [f"- {n}"]
    lines += ["", "## Quality, measured by the exact scorer (`bench/bench_world_model.py`)", "", markdown(res),
              "Relative quality is `argus.world.scorer.relative_quality`: an approximated image's score over the",
              "full-quality image's score for the same prompt and seed, capped at 1; 1 when the full image scores 0.",
              f"Measured in {res['seconds'] / 60:.0f} min."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--train-log", required=True, type=Path)
    ap.add_argument("--bench", required=True, type=Path)
    ap.add_argument("--note", action="append", default=[], help="a provenance line (repeatable)")
    args = ap.parse_args()
    text = card(args.model, json.loads(args.train_log.read_text()), json.loads(args.bench.read_text()), args.note,
                args.train_log)
    (args.model / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
