"""Every built-in task module is imported here explicitly, so each registers its tasks once."""

from hgbench.tasks import cifar10, digits, digits_reversible, ridge, rotated_digits  # noqa: F401
