"""Sharing outputs with other machines: directory, HTTP and REAPI remote caches
(remote), remotes and keys as the config files set them (config, over core/config)
and ed25519 signatures on build records (signing). Which outputs to move is
decided above, by build/ and the command line.
"""
