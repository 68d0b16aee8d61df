"""The built-in plugins, one module each; ``registry.DEFAULT_REGISTRY`` maps names to them."""
