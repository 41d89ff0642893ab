"""Benchmark workloads: the parameter shapes a step runs over.

``RESNET18_SHAPES`` are the parameter shapes of torchvision's ResNet-18 (ImageNet head) in
parameter order: 62 tensors, 11,689,512 elements, from 64-element biases to a
2,359,296-element convolution -- a realistic mix of tiny and large arrays for a
multi-tensor step. ``flat(n)`` is one tensor of n elements.
"""

from __future__ import annotations

from typing import List, Tuple

Shape = Tuple[int, ...]

RESNET18_SHAPES: Tuple[Shape, ...] = (
    (64, 3, 7, 7), (64,), (64,), (64, 64, 3, 3), (64,), (64,), (64, 64, 3, 3), (64,), (64,),
    (64, 64, 3, 3), (64,), (64,), (64, 64, 3, 3), (64,), (64,), (128, 64, 3, 3), (128,),
    (128,), (128, 128, 3, 3), (128,), (128,), (128, 64, 1, 1), (128,), (128,),
    (128, 128, 3, 3), (128,), (128,), (128, 128, 3, 3), (128,), (128,), (256, 128, 3, 3),
    (256,), (256,), (256, 256, 3, 3), (256,), (256,), (256, 128, 1, 1), (256,), (256,),
    (256, 256, 3, 3), (256,), (256,), (256, 256, 3, 3), (256,), (256,), (512, 256, 3, 3),
    (512,), (512,), (512, 512, 3, 3), (512,), (512,), (512, 256, 1, 1), (512,), (512,),
    (512, 512, 3, 3), (512,), (512,), (512, 512, 3, 3), (512,), (512,), (1000, 512), (1000,),
)

RESNET18_NUMEL = 11_689_512


def resnet18() -> List[Shape]:
    """The 62 parameter shapes of ResNet-18, in parameter order."""
    return list(RESNET18_SHAPES)


def flat(n: int) -> List[Shape]:
    """One tensor of ``n`` elements."""
    return [(int(n),)]
