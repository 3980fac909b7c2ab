"""Reference implementations for lab wgan (see ../shared/CURRICULUM.md). Arrives with its lab."""
