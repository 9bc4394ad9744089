"""The web UI: server-rendered pages for people browsing the registry (docs/ui.md).

It calls the same services and the same access gate as the API; it never reads storage or the
database itself.
"""
