"""One file per recipe step; the registry is compress/recipes/registry.py."""
