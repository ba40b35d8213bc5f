"""Scaling laws, the mixture planner and the data loader that follows a plan (DESIGN §3.7–3.10)."""
