"""Recipes as written: the TOML schema (schema), reading a recipe file (recipe), the
wording of schema errors (messages), the dependency graph (graph), canonical JSON and
every hash the design defines (keys), validated documents remembered by their bytes
(recipecache). Pure values; no network, no processes.
"""
