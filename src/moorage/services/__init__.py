"""Use cases: the registry's rules over the storage and metadata ports. No HTTP, no SQL."""
