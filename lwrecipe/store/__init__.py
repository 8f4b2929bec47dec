"""The local content-addressed store: cas/, ac/ and sources/ with their write and read
checks (store), canonical archives (archive), packing and restoring outputs (outputs),
comparing two outputs (compare) and freeing space (gc). Nothing here decides what to build.
"""
