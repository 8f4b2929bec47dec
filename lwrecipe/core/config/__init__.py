"""Configuration loading: the project's lwrecipe.toml and the user's config file
found, read (bounded), validated against one schema, and cut down to what a
project may set on its own unless the user accepted it. What a setting means is
decided where it is used (remote/config.py turns remotes and keys into specs)."""
