"""Every built-in task module is imported here explicitly, so each registers its tasks once."""

from hgbench.tasks import (  # noqa: F401
    cifar10,
    cifar10_lila,
    digits,
    digits_cleaning,
    digits_reversible,
    ridge,
    rotated_digits,
    scaling,
)
