"""Render a Triton model repository for one level, and the command that serves it.

The model repository template is `worker_image/model_repository/argus_t2i` (the same
files the worker image ships). Rendering copies it under the level's name, which is
the Triton model name, so Triton's metrics carry the level.
"""

from __future__ import annotations

import os
import sys
import shutil
import sysconfig
from pathlib import Path

from argus.contract import WORKER_DRAIN_S, TritonPorts
from argus.worker.settings import METRICS_PORT_ENV

TEMPLATE_ENV = "ARGUS_MODEL_TEMPLATE"


def template_dir() -> Path:
    """The model template: $ARGUS_MODEL_TEMPLATE, else worker_image/ of this checkout."""
    if os.environ.get(TEMPLATE_ENV):
        return Path(os.environ[TEMPLATE_ENV])
    return Path(__file__).resolve().parents[3] / "worker_image" / "model_repository" / "argus_t2i"


def render_repository(dest: Path, level: str) -> Path:
    """Write `dest/<level>/` (config.pbtxt + 1/model.py) from the template; return dest."""
    src = template_dir()
    if not (src / "config.pbtxt").exists():
        raise FileNotFoundError(f"model template not found at {src} (set {TEMPLATE_ENV})")
    target = dest / level
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def triton_command(repo: Path, ports: TritonPorts, work_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Command line and extra environment for tritonserver serving `repo`.

    With the nvidia-pytriton wheel installed (local runs) use its bundled binary and
    python backend; otherwise `tritonserver` from PATH (the official Triton image).
    """
    args = [f"--model-repository={repo}", f"--http-port={ports.http}", f"--grpc-port={ports.grpc}",
            f"--metrics-port={ports.metrics}", "--allow-metrics=true", "--log-verbose=0",
            "--exit-on-error=true", "--strict-readiness=true", f"--exit-timeout-secs={WORKER_DRAIN_S}"]
    port = {METRICS_PORT_ENV: str(ports.metrics)}  # the worker reads its own arrivals there
    try:
        import pytriton  # noqa: F401  (only to locate the bundled server)
    except ImportError:
        return ["tritonserver", *args], port
    root = Path(pytriton.__file__).parent / "tritonserver"
    backends = work_dir / "backends"
    py = backends / "python"
    py.mkdir(parents=True, exist_ok=True)
    for f in (root / "backends/python/libtriton_python.so", root / "backends/python/triton_python_backend_utils.py",
              root / "python_backend_stubs/3.11/triton_python_backend_stub"):
        link = py / f.name
        if not link.exists():
            link.symlink_to(f)
    libs = [sysconfig.get_config_var("LIBDIR"), str(root.parent.parent / "nvidia_pytriton.libs")]
    env = {"LD_LIBRARY_PATH": ":".join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":"),
           # The embedded stub interpreter finds its site-packages through `python3` on PATH:
           # put this environment's first, so model.py imports argus from the same venv.
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **port}
    return [str(root / "bin/tritonserver"), *args, f"--backend-directory={backends}"], env
