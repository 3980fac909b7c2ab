"""Reference implementations for lab dcgan (see ../shared/CURRICULUM.md). Arrives with its lab."""
