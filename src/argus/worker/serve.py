"""Container entry point of a worker: render the level's model repository and exec tritonserver."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from argus.contract import TritonPorts
from argus.worker.repository import render_repository, triton_command
from argus.worker.settings import WorkerSettings


def main() -> None:
    """Validate settings from the environment, then replace this process with tritonserver."""
    settings = WorkerSettings.from_env()  # fails fast with a message naming the bad variable
    work = Path(os.environ.get("ARGUS_WORK_DIR") or tempfile.mkdtemp(prefix="argus-worker-"))
    repo = render_repository(work / "models", settings.level)
    cmd, env = triton_command(repo, TritonPorts(), work)
    os.environ.update(env)
    sys.stdout.flush()
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
