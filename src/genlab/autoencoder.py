"""Reference implementations for lab autoencoder (see ../shared/CURRICULUM.md). Arrives with its lab."""
