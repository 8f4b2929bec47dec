"""The bottom layer every other package may use and which uses none of them:
errors, digests and canonical JSON, atomic and link-safe files, documents
read from disk, terminal-safe text, URL checks and test fault points."""
