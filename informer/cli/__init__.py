"""Console scripts (Hydra mains)."""
