"""Recipes: one readable file per technique, each exposing `main(cfg, ...)`; nothing runs at import."""
