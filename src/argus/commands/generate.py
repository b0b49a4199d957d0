"""`argus generate "PROMPT" --out FILE.png`: one request through Envoy, images saved as PNG."""

from __future__ import annotations

import json
from pathlib import Path

from argus.tools.client import ApiError, GeneratedImage, generate
from argus.local.runtime import read_state


def register(sub) -> None:
    """Add the `generate` subcommand."""
    p = sub.add_parser("generate", help="send one prompt through Envoy and save the image(s)")
    p.add_argument("prompt")
    p.add_argument("--out", type=Path, default=Path("out/image.png"), help="PNG path (n>1 adds -1, -2, ...)")
    p.add_argument("--url", help="Argus endpoint (default: the running `argus up` system)")
    p.add_argument("--workdir", type=Path, default=Path("run"))
    p.add_argument("--size", default="64x64")
    p.add_argument("-n", type=int, default=1)
    p.add_argument("--seed", type=int)
    p.add_argument("--quality-floor", type=float)
    p.add_argument("--api-key")
    p.set_defaults(func=run)


def save_images(images: list[GeneratedImage], out: Path) -> list[Path]:
    """Write each PNG; the first at `out`, the others numbered."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = out if i == 0 else out.with_name(f"{out.stem}-{i}{out.suffix}")
        p.write_bytes(img.png)
        paths.append(p)
    return paths


def run(args) -> int:
    """Generate and save; print where and what Argus did."""
    url = args.url or read_state(args.workdir)["url"]
    try:
        images = generate(url, args.prompt, size=args.size, n=args.n, seed=args.seed,
                          quality_floor=args.quality_floor, api_key=args.api_key)
    except ApiError as e:
        print(f"argus generate: {e}")
        return 1
    for p, img in zip(save_images(images, args.out), images):
        print(f"{p.resolve()}  {json.dumps(img.report, sort_keys=True)}")
    return 0
