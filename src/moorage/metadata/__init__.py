"""Registry metadata: repositories, manifests, tags, blob links, references, upload sessions."""
