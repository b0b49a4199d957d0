"""Trivial fast worker: answers at once with a HEIGHTxWIDTH image filled from the seed, and INFO.

Same tensors as the Argus worker (see ../config.pbtxt); used only by bench/bench_router.py.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from argus.contract import WorkReport


def _scalar(request, name):
    t = pb_utils.get_input_tensor_by_name(request, name)
    return None if t is None else t.as_numpy().reshape(-1)[0]


class TritonPythonModel:
    """One level name, no model: the level is the Triton model name."""

    def initialize(self, args):
        """Remember the level (model name)."""
        self.level = args["model_name"]

    def execute(self, requests):
        """One image per request, no computation beyond filling it."""
        out = []
        for req in requests:
            h, w, seed = int(_scalar(req, "HEIGHT")), int(_scalar(req, "WIDTH")), int(_scalar(req, "SEED"))
            image = np.full((1, h, w, 3), seed % 256, dtype=np.uint8)
            info = WorkReport(level=self.level, steps_run=0).to_json()
            out.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("IMAGE", image),
                pb_utils.Tensor("INFO", np.array([[info]], dtype=np.object_))]))
        return out
