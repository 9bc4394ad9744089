"""Events about changes (pushes, deletes) and their delivery to webhook endpoints.

Pure parts (the CloudEvent, signatures, endpoint matching, the SSRF rules) and the delivery
worker; the outbox tables themselves are :mod:`moorage.metadata.outbox`. See
docs/operations.md#events-and-webhooks.
"""
