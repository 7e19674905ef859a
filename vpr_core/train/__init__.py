"""Training of the re-ranking heads (DHE stage 1 here), with exact resume and atomic checkpoints."""
