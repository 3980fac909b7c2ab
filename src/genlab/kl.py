"""Reference implementations for lab kl (see ../shared/CURRICULUM.md). Arrives with its lab."""
