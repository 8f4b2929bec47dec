"""Everything a build takes in, fetched and checked before it starts: downloads with
mirrors and resume (fetch, over httpx, web.py), pinned git trees (gitsrc), safe unpacking
(unpack), patch series (patch), a recipe's laid-out source tree (sources) and the host
tools a build may call, with their fingerprints (hosttools).
"""
