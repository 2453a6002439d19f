"""Compressed and natural students of compiled models, distilled in JAX (thesis ch. 6–7)."""
