"""Black-box end-to-end tests: a real registry process driven by real clients.

See ``README.md`` in this folder for how to run them.
"""
