"""Sharing outputs with other machines: where a remote's bytes are kept (backends/:
directory, HTTP, REAPI behind one protocol), moving entries between them and the
local store (remote), remotes and keys as the config files set them (config, over core/config), ed25519
signatures on build records (signing) and remote execution over REAPI
(execution, with input roots' Merkle trees in merkle). Which outputs to move is
decided above, by build/ and the command line.
"""
