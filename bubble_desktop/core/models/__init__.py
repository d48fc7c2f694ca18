"""Getting a model: the catalog (what fits this machine), hub sources, resumable downloads."""
