"""Pure OCI spec logic: digests, names, tags, media types, manifests, ranges. No I/O here."""
