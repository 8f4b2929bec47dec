"""Where a remote cache's bytes are kept, behind one `Backend` protocol (base): a
directory reached without following links (directory), an HTTP(S) server with
WebDAV listing (http), a REAPI server's CAS and action cache (reapi); opening
turns a configured remote into one.
"""
