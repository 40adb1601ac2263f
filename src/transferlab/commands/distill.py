"""``transferlab distill TEACHER [DATA] --student RECIPE [--temperature T] [--alpha A] [training options]``.

Trains ``RECIPE`` on the soft labels of ``TEACHER`` (a run folder, or ``OUT/runs/ensemble`` from
``compare``), on the teacher's own data and split unless ``DATA`` is given; see
:mod:`transferlab.distillation`. The student lands in ``runs/RECIPE-distilled`` (``--run-dir``, ``--name``)
and is evaluated, exported and served like any run. Every ``train`` flag applies to the student.
"""
from __future__ import annotations

import argparse

from ..choices import BACKENDS, DISTILL_ALPHA, DISTILL_TEMPERATURE
from .train import add_arguments as add_train_arguments
from .train import apply_config_file, options_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teacher", metavar="TEACHER",
                        help="the teacher: a run folder, or a compare's OUT/runs/ensemble (its ONNX graph)")
    group = parser.add_argument_group("distillation")
    group.add_argument("--student", dest="model", metavar="RECIPE", default=None,
                       help="the student's recipe (same as --model; default mobilenet_v2)")
    group.add_argument("--temperature", type=float, default=DISTILL_TEMPERATURE,
                       help="softens the teacher's probabilities (T > 0; T^2 scales the soft term; default 4)")
    group.add_argument("--alpha", type=float, default=DISTILL_ALPHA,
                       help="weight of the teacher's soft labels against the true labels (0-1, default 0.9)")
    group.add_argument("--teacher-tta", action="store_true",
                       help="the teacher's probabilities averaged with the mirrored images (one more pass)")
    group.add_argument("--teacher-backend", choices=BACKENDS, default="auto",
                       help="how the teacher runs (default auto: its ONNX export when current, else PyTorch)")
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # stage modules are imported here, not at the top: they load PyTorch, which building the CLI
    # parser (`transferlab --help`) must not pay
    from ..distillation import distill
    from ..training.config import TrainConfig
    from ..training.distributed import env_rank

    apply_config_file(args)
    student = args.model or TrainConfig.model
    result = distill(args.teacher, args.data, student=student, temperature=args.temperature, alpha=args.alpha,
                     teacher_tta=args.teacher_tta, backend=args.teacher_backend, progress=not args.no_progress,
                     **options_from_args(args))
    best = result.best
    if best is not None and env_rank() == 0:
        print(f"student: {result.dir}  best epoch {best['epoch']}: val_loss {best['val_loss']:.4f}, "
              f"val_acc {best['val_acc']:.4f}")
        print(f"next: transferlab evaluate {result.dir}")
    return 0
