"""Bridges from other training loops to efflab's FLOP ledger."""
