"""The reward service: HTTP server, request parsing, the queue to the device, clients."""
