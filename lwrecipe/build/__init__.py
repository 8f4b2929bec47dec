"""Turning recipes into outputs: build keys and statuses of a graph (plan, status), the
bubblewrap sandbox (sandbox), one recipe's build and record (builder), scheduling a
graph with substitution from remotes (engine) and moving a graph's outputs (transfer).
"""
