"""The data plane: an async HTTP router (behind Envoy) that assigns each prompt a level and calls Triton."""
