"""Embedding matrices in, clusters out: spherical k-means, assignment, SemDeDup (DESIGN §3.2–3.3)."""
