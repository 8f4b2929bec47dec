"""What a release is made of and whether it still holds: the lockfile and --locked
checks (lockfile), auditing a checkout and cache against it (audit), naming the input
behind a miss or a difference (why, explain) and SBOM export (sbom).
"""
