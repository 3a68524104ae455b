"""The integration test bed: real registries, a token server, synthetic images, a raw client."""
