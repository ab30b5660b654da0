"""Models on this machine: the catalog, verified downloads into the cache, opening a model by path or name."""
