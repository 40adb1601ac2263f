"""Every fixed set of choices, defined once.

The API validates with these lists and the CLI offers them, so a new choice is added in one place.
This module imports nothing heavy: the CLI builds its parser from it without loading PyTorch.
"""
from __future__ import annotations

AUGMENTS = ("none", "shift", "light", "strong")      # transferlab.data.transforms.build_transform presets
FREEZE_POLICIES = ("frozen", "full")                 # transferlab.models.apply_freeze
OPTIMIZERS = ("sgd", "adam", "adamw")                # transferlab.training.schedule.build_optimizer
SCHEDULES = ("constant", "cosine", "step")           # transferlab.training.schedule.build_scheduler
SAMPLERS = ("shuffle", "balanced")                   # transferlab.training.sampling.train_loader: train --sampler
LOSSES = ("ce", "focal")                             # transferlab.training.losses.make_criterion: train --loss
MONITORS = ("val_loss", "val_acc", "train_loss", "train_acc")
AMP_MODES = ("auto", "none", "bf16")                 # transferlab.precision: bf16 autocast where it pays
EVAL_SPLITS = ("val", "test", "train", "all")        # transferlab.evaluate
EXPORT_FORMATS = ("onnx", "torchscript", "openvino", "coreml")  # transferlab.export
QUANTIZE = ("int8",)
TRACKERS = ("tensorboard", "mlflow")                 # transferlab.tracking: train --trackers
DEVICES = ("auto", "cpu", "cuda", "cuda:N")          # transferlab.training.api.pick_device
MIN_INPUT_SIZE = 32                                  # the smallest input side any recipe, the doctor or tune accepts
BACKENDS = ("auto", "onnx", "int8", "torch", "openvino", "openvino-int8")  # transferlab.predictor.Predictor
RESIZE_MODES = ("crop", "pad", "stretch")            # transferlab.data.images.resize_image: train --resize
DISTILL_TEMPERATURE, DISTILL_ALPHA = 4.0, 0.9        # transferlab.distillation.distill defaults (Hinton et al.'s CIFAR-10)
