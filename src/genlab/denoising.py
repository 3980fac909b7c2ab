"""Reference implementations for lab denoising (see ../shared/CURRICULUM.md). Arrives with its lab."""
