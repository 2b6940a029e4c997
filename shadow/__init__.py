"""The shadow side: consumers of the tee streams (the 2.0.1 shadow backend and divergence engine come next)."""
