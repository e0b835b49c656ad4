"""The budget study: every method at total budgets of B × one `fixed` training run, each spending
it the way meant for its kind, and a one-at-a-time sweep of each method's own settings.

`kinds` says how each kind spends a budget (the rules, documented once), `search` holds the
full-trial black-box searchers, `spend` the wrapper that makes any registered method spend B runs,
`plan` the cells, `study` the command, `splice` the step that puts a rerun's rows of some methods
in place of the study's, and `hgbench.report.budgets` the report. Nothing here is
imported by the runner or the default suite: the study builds on them.
"""
