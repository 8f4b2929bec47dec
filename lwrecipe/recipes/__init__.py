"""Recipes as written: the TOML schema (schema), loading and its messages (recipe), the
dependency graph (graph), canonical JSON and every hash the design defines (keys),
validated documents remembered by their bytes (recipecache). Pure values; no network, no processes.
"""
