"""Scorers add score columns to document batches (quality, domain, prototypicality, complexity).

See DESIGN §3.4–3.6. Scorers only add columns; deciding what to keep is the prune step's job.
"""
