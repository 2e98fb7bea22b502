"""The single home of FLOP math: analytic counts, measured cross-checks, the Ledger, hardware cost.

Every other module asks this package; nobody re-derives 6N elsewhere.
"""
