"""Every built-in task module is imported here explicitly, so each registers its tasks once."""

from hgbench.tasks import cifar10, digits, ridge  # noqa: F401
