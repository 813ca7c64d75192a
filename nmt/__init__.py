"""Torch-free core shared by training and serving: the engine interface, the search, tokenization."""
