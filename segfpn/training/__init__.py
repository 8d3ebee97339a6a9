"""Training: the LightningModule, its losses and optimiser, callbacks, run folders, checkpoint writing, W&B set-up
and the LightningCLI. The one layer of segfpn that imports Lightning (datasets' DataModule aside)."""
