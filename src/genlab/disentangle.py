"""Reference implementations for lab disentangle (see ../shared/CURRICULUM.md). Arrives with its lab."""
