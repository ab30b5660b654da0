"""The real-anatomy VQ-GAN's slice grids, their catalog names and its learning rate (torch-free, for the CLI)."""

from __future__ import annotations

# 512 x 512 chest slices resized to 128 x 128 (2.8 mm for a 360 mm field of view): the coarsest grid on which the
# larger lung vessels and the fissures stay visible. 256 x 256 (1.4 mm) halves the resize error on its own but
# makes an explanation about 6x slower (docs/models.md, "The 256 x 256 VQ-GAN").
DEFAULT_REAL_GRID = 128
REAL_GRID_NAMES = {128: "demo-vqgan", 256: "demo-vqgan-256"}
AE_LEARNING_RATE = 2e-4
