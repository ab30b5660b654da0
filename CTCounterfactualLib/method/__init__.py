"""Latent Shift itself: latent operations, the exact gradient, the lambda search, the explanation, memory."""
