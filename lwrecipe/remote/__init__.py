"""Sharing outputs with other machines: directory and HTTP remote caches (remote), who
and what is configured (config, configfile) and ed25519 signatures on build records
(signing). Which outputs to move is decided above, by build/ and the command line.
"""
