"""How each kind of method spends a total budget of B training runs (the rules, stated once).

One "run" is the task's full schedule of the `fixed` method: `task.epochs × steps_per_epoch`
SGD steps, whose cost in training-step equivalents (TSE) is that many steps by definition.
"""

from __future__ import annotations

from hgbench.contracts.method import METHODS, Family
from hgbench.contracts.schema import StrEnum

BUDGETS: tuple[int, ...] = (1, 3, 10, 30)  # × one fixed run's TSE


class Kind(StrEnum):
    SINGLE = "single"  # cannot use more budget: keeps its one run
    SEARCH = "search"  # black-box search: full-schedule trials
    META = "meta"  # meta-iteration methods: one hyper-step per training run
    ONLINE = "online"  # joint training and tuning in one run


RULES: dict[Kind, str] = {
    Kind.SINGLE: "its one run at every budget (it has nothing to spend more on); drawn flat and "
    "marked as such",
    Kind.SEARCH: "B × the run's steps, shared by trials that each train the task's full schedule "
    "from the shared seeded init (Hyperband's early rungs train 1/9 and 1/3 of it); the "
    "incumbent is the trial with the lowest validation loss, and its test NLL is reported",
    Kind.META: "B meta-iterations (each a whole training run of T steps and its hypergradient), "
    "one Adam step on the hparams after each; the cap `meta_iterations` is lifted",
    Kind.ONLINE: "the joint run over the task's schedule, then, when at least one run's TSE of "
    "budget is left, one retrain from the same init with the hparams the joint run found, "
    "keeping the better of the two by validation loss. More retrains would repeat the same "
    "init and batch order to the same result, so budget beyond that is reported unused",
}

META_METHODS = frozenset({"reversible_sgd", "drmad"})
# black-box searchers of the budget axis (hgbench.budgets.search): registered methods keep their
# own names, the two new ones exist only here (they are not in the default suite)
SEARCHERS = ("random_search", "tpe", "hyperband", "gp_bo")


def kind_of(method: str) -> Kind:
    if method in SEARCHERS:
        return Kind.SEARCH
    if method in META_METHODS:
        return Kind.META
    family = METHODS[method].family
    if family == Family.BASELINE:
        return Kind.SINGLE
    if family == Family.BLACKBOX:
        return Kind.SEARCH
    return Kind.ONLINE
