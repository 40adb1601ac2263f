"""``transferlab train [DATA] --model NAME ...``: train one recipe into ``runs/NAME/``.

Every flag maps to a keyword of :func:`transferlab.train.train` (see ``TrainConfig``). Numbers
are checked by the training config so a bad value is one ``error:`` line (exit 2). Under
``torchrun --nproc_per_node N -m transferlab train ...`` it trains with DistributedDataParallel.
"""
from __future__ import annotations

import argparse

# flag dest -> converter name; values are converted in run() so errors are one-line ConfigErrors
_INTS = ("epochs", "batch_size", "warmup", "step_size", "unfreeze_from", "unfreeze_last", "fine_tune",
         "input_size", "seed", "workers", "feature_views", "early_stopping", "reduce_lr", "threads")
_FLOATS = ("lr", "momentum", "gamma", "min_lr", "weight_decay", "label_smoothing", "fine_tune_lr",
           "val_ratio", "min_delta", "reduce_lr_factor", "reduce_lr_min")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    B = argparse.BooleanOptionalAction
    parser.add_argument("data", metavar="DATA", nargs="?", default=None,
                        help="ROOT/CLASS/*.jpg, ROOT/{train,test[,val]}/CLASS, or a path,label CSV "
                             "(default: the built-in digits sample)")
    parser.add_argument("--model", "-m", default="mobilenet_v2", help="recipe name (transferlab models), or timm:NAME")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", default="10", help="epochs (of the first phase; default 10)")
    g.add_argument("--batch-size", default="32", help="batch size per process (default 32)")
    g.add_argument("--lr", default=None, help="learning rate (default: the recipe's)")
    g.add_argument("--optimizer", default=None, help="sgd | adam | adamw (default: the recipe's, adam)")
    g.add_argument("--momentum", default="0.9", help="SGD momentum (default 0.9)")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum for SGD")
    g.add_argument("--schedule", default="cosine", help="lr schedule per epoch: constant | cosine | step (default cosine)")
    g.add_argument("--warmup", default="0", help="linear warm-up epochs (default 0)")
    g.add_argument("--step-size", default=None, help="epochs between lr drops for --schedule step (default epochs/3)")
    g.add_argument("--gamma", default="0.1", help="lr factor of each drop for --schedule step (default 0.1)")
    g.add_argument("--min-lr", default="0", help="final lr of the cosine schedule (default 0)")
    g.add_argument("--weight-decay", default=None, help="weight decay (default: the recipe's)")
    g.add_argument("--label-smoothing", default="0", help="cross-entropy label smoothing (default 0)")
    g.add_argument("--class-weights", default=None, metavar="auto|W1,W2,...",
                   help="weight the loss per class: auto = sklearn 'balanced', or one number per class")
    g = parser.add_argument_group("model and data")
    g.add_argument("--augment", default=None, help="none | light | strong (default: the recipe's)")
    g.add_argument("--freeze", default=None, help="frozen (train the head only) | full (default: the recipe's)")
    g.add_argument("--unfreeze-from", default=None, metavar="N", help="train backbone layers N.. and the head")
    g.add_argument("--unfreeze-last", default=None, metavar="K", help="train the last K backbone blocks and the head")
    g.add_argument("--fine-tune", default="0", metavar="EPOCHS",
                   help="after --epochs of head-only training, fine-tune this many epochs with the backbone "
                        "unfrozen (all, or --unfreeze-from/--unfreeze-last) at --fine-tune-lr")
    g.add_argument("--fine-tune-lr", default=None, help="lr of the fine-tuning phase (default lr/10)")
    g.add_argument("--head", default="", help="hidden dense layers of the head, e.g. 256,128")
    g.add_argument("--dropout", default=None, help="head dropout: one value or one per hidden layer, e.g. 0.5,0.3")
    g.add_argument("--pretrained", action=B, default=None, help="use pretrained weights (default: the recipe's)")
    g.add_argument("--weights", default=None, metavar="PATH", help="pretrained weight file (safetensors or .pth)")
    g.add_argument("--input-size", default=None, help="input image size (default: the recipe's)")
    g.add_argument("--val-ratio", default="0.2", help="fraction held out for validation (default 0.2)")
    g.add_argument("--seed", default="0", help="seed of split, init, augmentation and order (default 0)")
    g.add_argument("--workers", default=None, help="data loader processes (default: 0 with the image cache)")
    g.add_argument("--cache", action=B, default=True, help="decode images once into the image cache (default on)")
    g.add_argument("--feature-cache", action=B, default=True,
                   help="with a frozen backbone, compute its features once and train the head on them (default on)")
    g.add_argument("--feature-views", default=None, metavar="K",
                   help="augmented views cached for feature caching (default 1 without augmentation, else min(epochs, 4))")
    g = parser.add_argument_group("callbacks")
    g.add_argument("--early-stopping", default=None, metavar="PATIENCE", help="stop after PATIENCE epochs without improvement")
    g.add_argument("--monitor", default="val_loss", help="metric for best checkpoint / early stopping / reduce-lr: "
                                                          "val_loss | val_acc (default val_loss)")
    g.add_argument("--min-delta", default="0", help="smallest change that counts as improvement (default 0)")
    g.add_argument("--restore-best", action=B, default=True, help="early stopping restores the best weights (default on)")
    g.add_argument("--reduce-lr", default=None, metavar="PATIENCE", help="multiply lr by --reduce-lr-factor after PATIENCE stalled epochs")
    g.add_argument("--reduce-lr-factor", default="0.1", help="default 0.1")
    g.add_argument("--reduce-lr-min", default="0", help="lower bound of the lr (default 0)")
    g = parser.add_argument_group("speed")
    g.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available, else cpu)")
    g.add_argument("--threads", default=None, help="CPU threads (default: all cores, shared among torchrun processes)")
    g.add_argument("--channels-last", action=B, default=None, help="channels-last memory format (default: on for CPU)")
    g.add_argument("--amp", default="none", help="none | bf16 autocast (default none)")
    g = parser.add_argument_group("run folder")
    g.add_argument("--run-dir", default="runs", help="parent folder of runs (default runs)")
    g.add_argument("--name", default=None, help="run name (default: the recipe name)")
    g.add_argument("--resume", action="store_true", help="continue the run RUN_DIR/NAME from its last completed epoch")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _convert(name: str, value, kind):
    from ..errors import ConfigError

    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"--{name.replace('_', '-')} must be {what}, got {value!r}") from None


def options_from_args(args: argparse.Namespace) -> dict:
    """The ``train()`` keyword arguments for parsed CLI args."""
    import dataclasses

    from ..train.config import TrainConfig

    opts = {}
    for f in dataclasses.fields(TrainConfig):  # every option has a flag (tests/test_train_cli.py checks)
        if f.name == "model":
            continue
        value = getattr(args, f.name)
        kind = int if f.name in _INTS else float if f.name in _FLOATS else None
        opts[f.name] = _convert(f.name, value, kind) if kind else value
    return opts


def run(args: argparse.Namespace) -> int:
    from ..data.sample import sample_dir
    from ..train import train
    from ..train.distributed import env_rank

    options = options_from_args(args)
    data = args.data if args.data is not None else sample_dir()
    result = train(data, model=args.model, progress=not args.no_progress, **options)
    best = result.best
    if best is not None and env_rank() == 0:
        print(f"run: {result.dir}  best epoch {best['epoch']}: val_loss {best['val_loss']:.4f}, "
              f"val_acc {best['val_acc']:.4f}")
    return 0
