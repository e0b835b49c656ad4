"""The paper behind each built-in method, for the methods table of report.html.

The method's docstring opens with what it does and whom it follows (house style); this adds
where to read the paper. A method missing here (a plugin) gets its docstring line and no link.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    cite: str  # "Lorraine et al. 2020"
    url: str


LORRAINE = Paper("Lorraine et al. 2020", "https://arxiv.org/abs/1911.02590")
MACLAURIN = Paper("Maclaurin et al. 2015", "https://arxiv.org/abs/1502.03492")
FRANCESCHI = Paper("Franceschi et al. 2017", "https://arxiv.org/abs/1703.01785")

METHOD_PAPERS: dict[str, tuple[Paper, ...]] = {
    "random_search": (
        Paper("Bergstra & Bengio 2012", "https://www.jmlr.org/papers/v13/bergstra12a.html"),
        Paper("Jamieson & Talwalkar 2016", "https://arxiv.org/abs/1502.07943"),
    ),
    "tpe": (
        Paper(
            "Bergstra et al. 2011",
            "https://papers.nips.cc/paper/4443-algorithms-for-hyper-parameter-optimization",
        ),
    ),
    "unroll": (FRANCESCHI, MACLAURIN),
    "forward_mode": (FRANCESCHI,),
    "truncated_bptt": (Paper("Shaban et al. 2019", "https://arxiv.org/abs/1810.10667"),),
    "pes": (Paper("Vicol et al. 2021", "https://arxiv.org/abs/2112.13835"),),
    "hypergradient_descent": (Paper("Baydin et al. 2018", "https://arxiv.org/abs/1703.04782"),),
    "ift_neumann": (LORRAINE,),
    "ift_identity": (LORRAINE,),
    "ift_cg": (LORRAINE,),
    "ift_exact": (LORRAINE,),
    "ift_nystrom": (Paper("Hataya & Yamada 2023", "https://arxiv.org/abs/2302.09726"),),
    "darts": (Paper("Liu et al. 2019", "https://arxiv.org/abs/1806.09055"),),
    "sama": (Paper("Choe et al. 2023", "https://arxiv.org/abs/2310.05674"),),
    "soba": (Paper("Dagréou et al. 2022", "https://arxiv.org/abs/2201.13409"),),
    "amigo": (Paper("Arbel & Mairal 2022", "https://arxiv.org/abs/2111.14580"),),
    "reversible_sgd": (MACLAURIN,),
    "drmad": (Paper("Fu et al. 2016", "https://arxiv.org/abs/1601.00917"),),
    "laplace_full": (Paper("Immer et al. 2021", "https://arxiv.org/abs/2104.04975"),),
    "laplace_ntk": (Paper("Immer et al. 2023", "https://arxiv.org/abs/2306.03968"),),
}
