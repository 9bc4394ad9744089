"""The BlobStore contract suite uses the session's moto server from tests/conftest.py."""
