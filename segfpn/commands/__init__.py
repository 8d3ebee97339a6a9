"""The command table of ``segfpn`` and the tools it runs: each tool module has ``main(argv)``.

Nothing here imports torch or Lightning: ``segfpn --help`` reads this table."""

# LightningCLI subcommands -> one-line summary.
LIGHTNING_COMMANDS = {
    "fit": "train a model (a new run folder, or resume one with --ckpt_path last)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "write predicted label maps of a checkpoint",
}

# Other commands: name -> ("module:function" taking argv, one-line summary).
TOOLS = {
    "summary": ("segfpn.commands.summary:main", "parameters, GFLOPs and shapes of the backbones' models"),
    "class-stats": ("segfpn.commands.class_stats:main", "pixel and image counts per class of a dataset split"),
    "feature-maps": ("segfpn.commands.feature_maps:main", "plot backbone and FPN feature maps of an image"),
    "cost": ("segfpn.commands.cost:main", "params, GFLOPs and latency of model variants side by side"),
    "experiment": ("segfpn.commands.experiment:main", "train and compare the variants of an experiment YAML"),
    "analyze": ("segfpn.commands.analyze:main", "per-class errors and confusions of a checkpoint"),
    "report": ("segfpn.commands.report:main", "Markdown/HTML report of the runs in a folder"),
    "convert": ("segfpn.commands.convert:main", "convert an mmseg / PVTv2-Seg checkpoint to segfpn"),
    "plot-curves": ("segfpn.commands.plot_curves:main", "loss, lr and val score curves of a run from its logs"),
    "browse-data": ("segfpn.commands.browse_data:main", "grid of augmented training samples with a class legend"),
    "export": ("segfpn.commands.export:main", "export a checkpoint to ONNX or TorchScript"),
    "benchmark": ("segfpn.commands.benchmark:main", "images/s of a config's loader, model step, fit and inference"),
}
