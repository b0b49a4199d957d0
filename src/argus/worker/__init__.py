"""The diffusion worker: pipeline, levels and latent store. Never imports Triton.

The Triton model (worker_image/model_repository/argus_t2i/1/model.py) is a thin
adapter over this package.
"""
