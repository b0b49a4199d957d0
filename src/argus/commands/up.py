"""`argus up`: run the whole system locally (real Triton, router, Envoy) until Ctrl-C."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml

from argus.local.controller import MODES
from argus.local.defaults import DEMO_MANIFEST, WORLD_PREDICTOR
from argus.tools.experiment import boot, default_profile
from argus.policy.profile import load_profile
from argus.spec import parse_manifest


def register(sub) -> None:
    """Add the `up` subcommand."""
    p = sub.add_parser("up", help="start the local system (Triton workers, router, Envoy) on loopback")
    p.add_argument("-f", "--file", type=Path, help="T2IService manifest (default: the built-in demo service)")
    p.add_argument("--workdir", type=Path, default=Path("run"), help="logs, state and latent store (default ./run)")
    p.add_argument("--demo", metavar="PROMPT", nargs="?", const="a photo of a red circle to the left of a blue square",
                   help="generate one image through Envoy, save it, print where, and shut down")
    p.add_argument("--out", type=Path, default=Path("out/argus-demo.png"), help="where --demo saves its image")
    p.add_argument("--mode", choices=MODES, default="argus",
                   help="argus: the control loop; proteus: the same loop prompt-agnostic (Proteus-like: one level mix for "
                        "every prompt); ha/ht/nirvana: the baselines' fixed policies (comparison runs)")
    p.add_argument("--profile", type=Path, help="level profile JSON (default: the model's bundled profile: for the "
                   "demo's world-sd, throughputs and per-level quality measured by `argus profile --scorer exact`; for "
                   "tiny-sd, measured throughputs with the published per-level quality, see argus/local/demo_profile.py)")
    p.add_argument("--predictor", type=Path, help="per-prompt level predictor artifact for the router "
                   "(default for the built-in demo: its bundled world-sd predictor; otherwise none, "
                   "every prompt's optimal level is full quality)")
    p.add_argument("--calibrate", action="store_true",
                   help="before the control loop starts, measure what the starting replicas serve saturated on this "
                        "machine (~20-40 s) and rescale the profile's throughputs to it; for the built-in demo also "
                        "its throughput target (its numbers are for the machine its profile was measured on)")
    p.set_defaults(func=run)


def load_service(path: Path | None):
    """(name, spec) from a manifest file, or the built-in demo."""
    doc = DEMO_MANIFEST if path is None else yaml.safe_load(path.read_text())
    return parse_manifest(doc)


def _demo_scaler(is_demo: bool):
    """For the built-in demo, scale its throughput target by the calibration factor: the demo's load numbers
    are for the machine its profile was measured on. A user's manifest is left as written."""
    if not is_demo:
        return None

    def scale(system, ctl) -> None:
        f = ctl.calibration["factor"]
        system.spec = system.spec.model_copy(update={"throughput_target": system.spec.throughput_target * f})
    return scale


def run(args) -> int:
    """Bring the system up, optionally run the demo, then wait for a signal and stop everything."""
    name, spec = load_service(args.file)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    t0 = time.monotonic()
    try:
        print(f"[argus] starting service {name!r} (levels: {', '.join(spec.levels)}) in {args.workdir.resolve()}",
              flush=True)
        profile = load_profile(args.profile) if args.profile else default_profile(spec)
        prompts = None
        if args.calibrate:
            from argus.tools.workload import read_prompts
            from argus.world.prompt_sets import world_prompts
            prompts = read_prompts() if args.file is not None else world_prompts("world-train", 64)
            print("[argus] calibrating: measuring the starting replicas saturated on this machine", flush=True)
        predictor = args.predictor
        if predictor is None and spec.model.name == "world-sd" and WORLD_PREDICTOR.is_file():
            predictor = WORLD_PREDICTOR  # the world model's own measured predictor
        system, ctl = boot(name, spec, args.workdir, mode=args.mode, profile=profile, predictor=predictor,
                           calibrate_with=prompts, on_calibrated=_demo_scaler(args.file is None))
        if ctl.calibration:
            c = ctl.calibration
            print(f"[argus] calibrated: {c['measuredRps']:.2f} req/s measured where the profile says "
                  f"{c['profiledRps']:.2f}: throughputs x {c['factor']:.2f}"
                  + (f", demo target {system.spec.throughput_target:.2f} req/s" if args.file is None else ""),
                  flush=True)
        print(f"[argus] ready in {time.monotonic() - t0:.0f}s: {system.url}/v1/images/generations "
              f"(logs: {system.workdir / 'logs'})", flush=True)
        if args.demo:
            from argus.commands.generate import save_images
            from argus.tools.client import generate

            t1 = time.monotonic()
            imgs = generate(system.url, args.demo, size=f"{spec.model.width}x{spec.model.height}", seed=42)
            paths = save_images(imgs, args.out)
            rep = imgs[0].report
            print(f"[argus] generated {rep['level']} ({rep['steps_run']} steps) in {time.monotonic() - t1:.1f}s "
                  f"-> {', '.join(str(p.resolve()) for p in paths)}", flush=True)
            return 0
        print("[argus] press Ctrl-C to stop (a process that exits is restarted; `argus status` shows each)",
              flush=True)
        while True:  # the system's supervision thread restarts processes and reports each restart once
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        print("[argus] stopping", flush=True)
        if "ctl" in locals():
            ctl.stop()
            system.stop()
