"""Blob storage: content-addressed bytes, with no notion of repositories or tags."""
