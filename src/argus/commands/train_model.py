"""`argus train-model`: train the compositional world's text-to-image model from scratch on CPU."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    """Add the `train-model` subcommand."""
    from argus.world.training import TrainSettings

    d = TrainSettings(out="")
    p = sub.add_parser("train-model", help="train the world model (a small latent diffusion model) from scratch")
    p.add_argument("--out", type=Path, required=True,
                   help="work directory: checkpoints (resumed if present), train-log.json, training-curve.png, "
                        "and the exported StableDiffusionPipeline under pipeline/")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads (1 is fastest on a busy 2-core machine: OpenMP threads spin when preempted)")
    p.add_argument("--vae-steps", type=int, default=d.vae_steps)
    p.add_argument("--decoder-steps", type=int, default=d.decoder_steps)
    p.add_argument("--only-decoder", action="store_true",
                   help="run only the decoder refinement (needs the VAE phase done); it does not change the latents, "
                        "so it can run beside the UNet phase on a second core (its log: train-log-decoder.json)")
    p.add_argument("--dataset-size", type=int, default=d.dataset_size)
    p.add_argument("--unet-steps", type=int, default=d.unet_steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--prediction", choices=("v_prediction", "epsilon"), default=d.prediction,
                   help="what the UNet predicts (v_prediction: the recipe's default)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run (or resume) every phase and export the pipeline."""
    from argus.world.training import Trainer, TrainSettings

    for name in ("vae_steps", "decoder_steps", "dataset_size", "unet_steps", "batch", "threads", "checkpoint_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    s = TrainSettings(out=str(args.out), seed=args.seed, threads=args.threads, vae_steps=args.vae_steps, decoder_steps=args.decoder_steps,
                      dataset_size=args.dataset_size, unet_steps=args.unet_steps, batch=args.batch, lr=args.lr,
                      checkpoint_every=args.checkpoint_every, prediction=args.prediction)
    if args.only_decoder:
        t = Trainer(s, log_name="train-log-decoder.json")
        t.train_vae()
        t.refine_decoder()
        print(f"decoder: {Path(args.out) / 'decoder.pt'}")
        return 0
    path = Trainer(s).run()
    print(f"model: {path}\ncurve: {Path(args.out) / 'training-curve.png'}\nlog:   {Path(args.out) / 'train-log.json'}")
    return 0
